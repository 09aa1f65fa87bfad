"""One error shape for everything the app can answer (API.md)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tongcha.kit.errors import ApiError

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
}


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details or []}}, status_code=status)


def _clean(errors: list[Any]) -> list[dict[str, Any]]:
    # Never echo the input back: it may hold an ID number or a name.
    return [{"field": ".".join(str(p) for p in e.get("loc", ())), "issue": e.get("msg", "")} for e in errors]


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "INVALID_ARGUMENT", "the request is not valid", _clean(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "INTERNAL" if exc.status_code >= 500 else "INVALID_ARGUMENT")
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        response = error_response(exc.status_code, code, message)
        # Starlette's own headers, e.g. the Allow of a 405 (RFC 9110).
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "INTERNAL", "internal error; the x-correlator identifies it in the hub's log")
