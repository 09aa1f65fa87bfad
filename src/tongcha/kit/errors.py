"""Typed errors: each carries its CAMARA-style code and HTTP status."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field


class ApiError(Exception):
    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidArgument(ApiError):
    code = "INVALID_ARGUMENT"
    status = 400


class OutOfRange(ApiError):
    code = "OUT_OF_RANGE"
    status = 400


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"
    status = 401


class PermissionDenied(ApiError):
    code = "PERMISSION_DENIED"
    status = 403


class NotFound(ApiError):
    code = "NOT_FOUND"
    status = 404


class Conflict(ApiError):
    code = "CONFLICT"
    status = 409


class PayloadTooLarge(ApiError):
    code = "INVALID_ARGUMENT"
    status = 413


class UnsupportedMediaType(ApiError):
    code = "INVALID_ARGUMENT"
    status = 415


class TooManyRequests(ApiError):
    code = "TOO_MANY_REQUESTS"
    status = 429


class Unavailable(ApiError):
    """The hub cannot do it just now (its database cannot be reached); the same request
    may be sent again after ``Retry-After`` seconds."""

    code = "UNAVAILABLE"
    status = 503


class ErrorDetail(BaseModel):
    code: str = Field(examples=["INVALID_ARGUMENT"])
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """The one error shape of every Tongcha API."""

    error: ErrorDetail


def responses(*errors: type[ApiError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route that can raise these errors."""
    out: dict[int | str, dict[str, Any]] = {}
    err: type[ApiError]
    for err in (*errors, InvalidArgument, Unavailable):
        entry = out.setdefault(err.status, {"model": ErrorBody, "description": ""})
        codes = set(filter(None, entry["description"].split(", "))) | {err.code}
        entry["description"] = ", ".join(sorted(codes))
    return out
