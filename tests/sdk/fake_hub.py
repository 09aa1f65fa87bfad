"""Test stand-ins for the hub's side of the platform protocol: a signer and a receiver."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from joserfc.jwk import KeySet

from tongcha.sdk import protocol
from tongcha.sdk.protocol import Operation
from tongcha.sim.servers import Message, Receive, Scope, Send


class HubSigner:
    """Signs calls as the hub does, with a key of its own."""

    def __init__(self, kid: str = "hub-test-1") -> None:
        self.key = protocol.new_signing_key(kid)

    @property
    def keys(self) -> KeySet:
        return protocol.key_set({"keys": [protocol.public_jwk(self.key)]})

    def token(self, platform_code: str, operation: Operation, body: bytes, **overrides: Any) -> str:
        """A signature for ``body``; ``overrides`` replace ``protocol.sign`` arguments."""
        key = overrides.pop("key", self.key)
        options: dict[str, Any] = {"issuer": protocol.HUB_ISSUER, "audience": platform_code, "path": operation.path}
        options.update(overrides)
        return protocol.sign(key, body=body, **options)

    def post(
        self,
        base_url: str,
        platform_code: str,
        operation: Operation,
        payload: dict[str, Any] | bytes,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        **overrides: Any,
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {protocol.SIGNATURE_HEADER: self.token(platform_code, operation, body, **overrides)}
        sent.update(headers or {})
        return httpx.post(base_url + operation.path, content=body, headers=sent, timeout=timeout)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CallbackReceiver:
    """A tiny ASGI app that records every request and answers ``status``."""

    status: int = 200
    received: list[Received] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message: Message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(scope["path"], headers, b"".join(chunks)))
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def error_code(response: httpx.Response) -> str:
    """The code of a response in the one error shape, checking the shape on the way."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["details"], list)
    code: str = body["error"]["code"]
    return code
