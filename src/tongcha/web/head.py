"""``HEAD`` answered as ``GET`` without the body (RFC 9110, 9.3.2).

FastAPI's routes take only the methods they declare, so a ``HEAD`` on a ``GET`` route
(``curl -I``, link checkers, caches revalidating the JWKS) was a 405 whose ``allow``
header listed ``HEAD``. Every ``HEAD`` is routed as a ``GET`` instead: the same status
and header fields, ``content-length`` included, and no body. A path without a ``GET``
still answers 405 and lists what it takes.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
            elif not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        # A copy: the server keeps its own scope, and with it the method it logs and
        # the rule that a HEAD answer has no body.
        await self.app({**scope, "method": "GET"}, receive, headers_only)
