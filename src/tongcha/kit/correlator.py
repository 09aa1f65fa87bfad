"""``x-correlator``: echoed on every answer and carried into every log line."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

correlator: ContextVar[str] = ContextVar("correlator", default="-")
# Where the middleware leaves the request's correlator for the handler of unexpected
# errors, which Starlette runs outside every middleware, after the ContextVar is reset.
SCOPE_KEY = "tongcha.correlator"
_VALID = re.compile(r"[A-Za-z0-9\-_.:]{1,128}")


class CorrelatorMiddleware:
    """Plain ASGI (no BaseHTTPMiddleware): it sits on the hot path of every check."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = correlator_of(scope)
        scope[SCOPE_KEY] = value
        token = correlator.set(value)
        header = (b"x-correlator", value.encode())

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with)
        finally:
            correlator.reset(token)


def correlator_of(scope: Scope) -> str:
    """The caller's ``x-correlator`` when it is well formed, else a new one."""
    for key, raw in scope["headers"]:
        if key == b"x-correlator":
            text: str = raw.decode("latin-1")
            if _VALID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class CorrelatorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlator = correlator.get()
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(CorrelatorFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(correlator)s] %(message)s"))
    root = logging.getLogger("tongcha")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
