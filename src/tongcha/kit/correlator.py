"""``x-correlator``: echoed on every answer and carried into every log line."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

correlator: ContextVar[str] = ContextVar("correlator", default="-")
# Where the middleware leaves the request's correlator for the handler of unexpected
# errors, which Starlette runs outside every middleware, after the ContextVar is reset.
SCOPE_KEY = "tongcha.correlator"
_VALID = re.compile(r"[A-Za-z0-9\-_.:]{1,128}")
# One line per request: method, the route's template (never the path as sent, which may
# hold a phone number), status and time taken, with the correlator like every line.
access_log = logging.getLogger("tongcha.access")


def log_access(scope: Scope, status: int, started: float, value: str, route: str | None = None) -> None:
    if not access_log.isEnabledFor(logging.INFO):
        return
    if route is None:
        route = getattr(scope.get("route"), "path", None) or "(no route)"
    took = (time.perf_counter() - started) * 1000
    access_log.info("%s %s %d %.1f ms", scope["method"], route, status, took, extra={"correlator": value})


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
        status = 500  # unless an answer starts: an error escaping the app becomes a 500
        started = time.perf_counter()

        async def send_with(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with)
        finally:
            log_access(scope, status, started, value)
            correlator.reset(token)


def correlator_of(scope: Scope) -> str:
    """The caller's ``x-correlator`` when it is well formed, else a new one."""
    for key, raw in scope["headers"]:
        if key == b"x-correlator":
            text: str = raw.decode("latin-1")
            if _VALID.fullmatch(text):
                return text
            break
    return f"{_made.prefix}{next(_made.count):016x}"


class _Made:
    """Correlators made here: 32 hex characters, a random half for this process and a
    count. A fresh uuid4 for every request (a read of the system's random source each)
    cost about 3% of the hub's time at thousands of checks a second."""

    def __init__(self) -> None:
        self.prefix = uuid.uuid4().hex[:16]
        self.count = itertools.count()


_made = _Made()


def _anew_after_fork() -> None:
    global _made
    _made = _Made()


os.register_at_fork(after_in_child=_anew_after_fork)


class CorrelatorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlator"):  # unless the line names its own
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
