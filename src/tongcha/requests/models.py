"""Requests: what someone asked the hub to find out or do across platforms."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from tongcha.kit.db import Base, BigId, UtcDateTime


class RequestKind(StrEnum):
    inquiry = "inquiry"
    detail = "detail"
    unbind = "unbind"
    dispute = "dispute"
    history = "history"
    label_clearance = "label_clearance"
    # The operator's (or a platform engineer's) test of the hub → platform path.
    probe = "probe"


class RequestState(StrEnum):
    open = "open"
    # Every platform task is final (answered or given up).
    completed = "completed"


class Request(Base):
    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(16), default=RequestState.open.value)
    # What was asked, without identity: numbers and dates only.
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # Whose request it is (a citizen's holder digest); None for the operator's probes.
    holder_digest: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    # The latest due time of its platforms, in working days from created_at.
    due_by: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # Where the result goes by SMS: the phone the citizen verified with.
    notify_number: Mapped[int | None] = mapped_column(BigInteger, default=None)
