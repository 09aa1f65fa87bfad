from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from tongcha.kit.text import OneLine


class VerificationIn(BaseModel):
    phone: str = Field(description="E.164, or 11 digits")
    name: OneLine | None = Field(default=None, max_length=100)
    id_number: str | None = Field(default=None, max_length=32)
    id_last6: str | None = Field(default=None, max_length=6)


class VerificationOut(BaseModel):
    verification_id: str
    expires_at: datetime
    resend_after: datetime
    # Seconds from now, like the token's: a page that must outlive a reload counts them
    # on its own clock, which need not agree with the hub's.
    expires_in: int


class CodeIn(BaseModel):
    code: str = Field(max_length=12)


class TokenOut(BaseModel):
    access_token: str
    expires_in: int


class NumberOut(BaseModel):
    number: str = Field(description="masked: +86138****8000")
    carrier: str
    started_on: date
    ended_on: date | None
    current: bool
    ref: str = Field(description="names this tenure's number in a request (number_ref) without spelling it out")
