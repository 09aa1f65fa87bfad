from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from tongcha.kit.text import Text
from tongcha.platforms.catalogue import AccountModel
from tongcha.platforms.fanout import Progress
from tongcha.platforms.models import PlatformStatus


class AppIn(BaseModel):
    code: Text = Field(min_length=1, max_length=32)
    name_zh: Text = Field(min_length=1, max_length=200)
    name_en: Text = Field(min_length=1, max_length=200)


class PlatformIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Text = Field(min_length=1, max_length=32)
    name: Text = Field(min_length=1, max_length=200, description="English name")
    name_zh: Text | None = Field(default=None, max_length=200)
    account_model: AccountModel = AccountModel.independent
    base_url: Text | None = Field(default=None, max_length=500)
    apps: list[AppIn] = Field(default_factory=list, max_length=100)


class PlatformPatch(BaseModel):
    """Only the fields sent change; a field sent as null is emptied where it may be."""

    model_config = ConfigDict(extra="forbid")

    base_url: Text | None = Field(default=None, max_length=500, description="null removes it: the hub stops calling")
    status: PlatformStatus | None = Field(default=None, description="may not be null")
    timeout_ms: int | None = Field(default=None, description="may not be null")
    max_concurrency: int | None = Field(default=None, description="may not be null")
    # Strict: lax parsing stored {"inquiry": true} as 1 and "3" as 3.
    sla_overrides: dict[str, StrictInt] | None = Field(
        default=None, description="working days per request kind, whole numbers 1 to 30; null removes every override"
    )


class AppOut(BaseModel):
    code: str
    name_zh: str
    name_en: str


class PlatformOut(BaseModel):
    code: str
    name: str
    name_zh: str | None
    account_model: str
    base_url: str | None
    status: str
    timeout_ms: int
    max_concurrency: int
    sla_overrides: dict[str, Any]
    apps: list[AppOut]
    keys: list[str] = Field(description="kids of the live keys its callbacks may be signed with")


class PlatformCreated(PlatformOut):
    credential: str = Field(description="bearer credential; shown once")


class KeyIn(BaseModel):
    jwk: dict[str, Any] = Field(description="the platform's public JWK (EC P-256 for ES256, or RSA)")


class KeyOut(BaseModel):
    kid: str


class HubKeysOut(BaseModel):
    live: list[str]
    retired: list[str] = Field(default_factory=list)


class ProbeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str
    operation: Literal["count", "list"] = "count"
    bound_from: date = Field(default=date(2000, 1, 1), description="bindings made on or after this day")
    platforms: list[str] | None = Field(default=None, description="platform codes; all callable ones if absent")


class TaskOut(BaseModel):
    platform: str
    platform_name: str
    task_id: str
    state: str
    attempts: int
    answer: dict[str, Any] | None
    answered_via: str | None
    error_code: str | None
    error: str | None
    finished_at: datetime | None
    due_by: datetime | None = None
    overdue: bool = Field(default=False, description="it was still open when its due time passed")


class ProgressOut(BaseModel):
    request_id: str
    kind: str
    state: str
    params: dict[str, Any]
    created_at: datetime
    completed_at: datetime | None
    due_by: datetime | None = None
    pending: list[str] = Field(description="platforms that have not answered yet")
    overdue: list[str] = Field(default_factory=list, description="platforms marked past their due time")
    tasks: list[TaskOut]

    @classmethod
    def of(cls, progress: Progress) -> ProgressOut:
        return cls(
            request_id=progress.request_id,
            kind=progress.kind,
            state=progress.state,
            params=progress.params,
            created_at=progress.created_at,
            completed_at=progress.completed_at,
            due_by=progress.due_by,
            pending=progress.pending,
            overdue=[t.platform for t in progress.tasks if t.overdue],
            tasks=[TaskOut.model_validate(t, from_attributes=True) for t in progress.tasks],
        )


class RequestSummaryOut(BaseModel):
    """A request in the operator's list; ``GET /operator/v1/requests/{id}`` has the rest."""

    request_id: str
    kind: str
    state: str
    created_at: datetime
    due_by: datetime | None
    completed_at: datetime | None
    platforms: int = Field(description="how many platforms it asked")
    pending: list[str] = Field(description="platforms that have not answered yet")
    overdue: list[str] = Field(description="platforms marked past their due time")


class RequestPageOut(BaseModel):
    requests: list[RequestSummaryOut] = Field(description="newest first")
    next_before: str | None = Field(description="pass as `before` for the next page; null on the last page")


class CallbackAck(BaseModel):
    task_id: str
    state: str
    recorded: bool = Field(description="false when the task was final already: nothing changed")
