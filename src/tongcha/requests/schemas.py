from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from tongcha.kit.text import OneLine

# A registered platform's code is at most 32 characters (the registry's limit): anything
# longer names none, and is refused here rather than looked up and echoed back whole.
PlatformCode = Annotated[OneLine, Field(min_length=1, max_length=32)]


class Accepted(BaseModel):
    request_id: str
    due_by: datetime


class InquiryIn(BaseModel):
    """Every number held under my ID now, every platform: how many accounts on each."""


class OneNumber(BaseModel):
    """A request about one number: the number itself, or its ``ref`` from GET /v1/me/numbers."""

    number: str | None = Field(default=None, description="E.164, e.g. +8613800138000")
    number_ref: str | None = Field(default=None, max_length=100, description="a ref from GET /v1/me/numbers")

    @model_validator(mode="after")
    def _one_of_them(self) -> OneNumber:
        if (self.number is None) == (self.number_ref is None):
            raise ValueError("give exactly one of number and number_ref")
        return self


class DetailIn(OneNumber):
    platform: PlatformCode = Field(description="the enterprise's code, e.g. ALIBABA")


class UnbindIn(OneNumber):
    platforms: list[PlatformCode] | None = Field(
        default=None, min_length=1, max_length=1000, description="codes; every platform if absent"
    )


class DisputeIn(OneNumber):
    platform: PlatformCode
    account_ref: OneLine = Field(min_length=1, max_length=200)
    action: Literal["unbind", "freeze", "cancel"]


class HistoryIn(OneNumber):
    """A number I held before."""


class TaskOut(BaseModel):
    platform: str
    platform_name: str
    number: str | None
    state: str
    due_by: datetime | None
    overdue: bool
    answer: dict[str, Any] | None
    error: str | None


class RequestOut(BaseModel):
    request_id: str
    kind: str
    state: str
    created_at: datetime
    due_by: datetime | None
    completed_at: datetime | None
    params: dict[str, Any]
    pending: list[str]
    overdue: list[str] = Field(description="platforms past their due time")
    platforms: list[TaskOut]
