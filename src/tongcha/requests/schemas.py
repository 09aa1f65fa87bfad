from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class Accepted(BaseModel):
    request_id: str
    due_by: datetime


class InquiryIn(BaseModel):
    """Every number held under my ID now, every platform: how many accounts on each."""


class DetailIn(BaseModel):
    number: str
    platform: str = Field(description="the enterprise's code, e.g. ALIBABA")


class UnbindIn(BaseModel):
    number: str
    platforms: list[str] | None = Field(default=None, description="codes; every platform if absent")


class DisputeIn(BaseModel):
    number: str
    platform: str
    account_ref: str = Field(min_length=1, max_length=200)
    action: Literal["unbind", "freeze", "cancel"]


class HistoryIn(BaseModel):
    number: str = Field(description="a number I held before")


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
