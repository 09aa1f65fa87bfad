"""A small SMS provider on loopback, for tests of the HTTP gateway and of what citizens receive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


@dataclass
class Provider:
    """A small SMS provider: the path says how it answers; every request is recorded."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)

    def endpoint(self, behaviour: str) -> str:
        return f"{self.url}/{behaviour}"

    def delivered(self) -> list[tuple[str, str]]:
        """(to, text) of each message the provider accepted, in the order it accepted them."""
        accepted = (json.loads(r["body"]) for r in self.received if 200 <= r.get("status", 0) < 300)
        return [(m["to"], m["text"]) for m in accepted]


def provider_app(received: list[dict[str, Any]]) -> Callable[..., Awaitable[None]]:
    async def app(
        scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        record = {"path": scope["path"], "method": scope["method"], "headers": headers, "body": body}
        received.append(record)
        behaviour = scope["path"].strip("/")
        status, answer = 200, b'{"id": "prov-' + str(len(received)).encode() + b'"}'
        if behaviour == "slow":
            await asyncio.sleep(1.0)
        elif behaviour == "broken":
            status, answer = 500, b'{"error": "internal"}'
        elif behaviour == "busy":
            status, answer = 429, b'{"error": "slow down"}'
        elif behaviour == "rejected":
            status, answer = 400, b'{"error": "bad number"}'
        elif behaviour == "no-id":
            answer = b'{"status": "queued"}'
        elif behaviour == "not-json":
            answer = b"OK"
        elif behaviour == "second-fails-once" and sum(r["path"] == scope["path"] for r in received) == 2:
            status, answer = 503, b'{"error": "try again later"}'
        record["status"] = status
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": answer})

    return app
