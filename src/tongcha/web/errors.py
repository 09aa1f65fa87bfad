"""One error shape for everything the app can answer (API.md)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from tongcha.kit.correlator import SCOPE_KEY, correlator, correlator_of
from tongcha.kit.db import UNAVAILABLE, database_trouble
from tongcha.kit.errors import ApiError, Unavailable

log = logging.getLogger("tongcha.errors")

_STATUS_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    409: "CONFLICT",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "TOO_MANY_REQUESTS",
    503: "UNAVAILABLE",
}
# How long a client is asked to wait when the database cannot be reached.
RETRY_AFTER_S = 5


_HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details or []}}, status_code=status)


def _clean(errors: list[Any]) -> list[dict[str, Any]]:
    # Never echo the input back: it may hold an ID number or a name.
    return [{"field": ".".join(str(p) for p in e.get("loc", ())), "issue": e.get("msg", "")} for e in errors]


def _allowed_methods(request: Request, named: str) -> str:
    """Every method the app takes on this request's path (RFC 9110 asks a 405 for all of
    them): Starlette names only the first route that matched, and a path may have one
    route per method, so the documented operations on the path are added to its list."""
    methods = {m.strip().upper() for m in named.split(",") if m.strip()}
    path = request.url.path
    for template, operations in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(path):
            methods |= {m.upper() for m in operations if m.upper() in _HTTP_METHODS}
    if "GET" in methods:
        methods.add("HEAD")  # answered as the GET (web.head.HeadAsGet)
    return ", ".join(sorted(methods))


def _openapi_without_422(app: FastAPI) -> None:
    """FastAPI declares ``422`` (its own ``HTTPValidationError`` shape) on every route that
    takes input, but the hub answers a request that does not validate with ``400`` in the
    one error shape, which ``responses()`` declares: a client built from the document
    would wait for a 422 that never comes and parse the wrong body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = FastAPI.openapi(app)  # also kept as app.openapi_schema
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    _openapi_without_422(app)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "INVALID_ARGUMENT", "the request is not valid", _clean(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "INTERNAL" if exc.status_code >= 500 else "INVALID_ARGUMENT")
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        response = error_response(exc.status_code, code, message)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["allow"] = _allowed_methods(request, response.headers.get("allow", ""))
        return response

    async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
        # Not a bug in the hub but its database gone or overwhelmed: one line per request
        # (no traceback, no SQL, no parameters) and an answer the client can retry.
        # Handled inside the correlator middleware, which names the request in the line.
        log.warning("database unavailable: %s", database_trouble(exc))
        message = "the hub cannot reach its database just now; try again shortly"
        response = error_response(Unavailable.status, Unavailable.code, message)
        response.headers["retry-after"] = str(RETRY_AFTER_S)
        return response

    for raised in UNAVAILABLE:  # the same errors the workers wait out (kit.db)
        app.add_exception_handler(raised, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette calls this outside the middleware: the correlator's ContextVar is
        # reset and the middleware does not see this answer, so both are done here.
        value = request.scope.get(SCOPE_KEY) or correlator_of(request.scope)
        token = correlator.set(value)
        try:
            log.exception("unhandled error")
        finally:
            correlator.reset(token)
        response = error_response(500, "INTERNAL", "internal error; the x-correlator identifies it in the hub's log")
        response.headers["x-correlator"] = value
        return response
