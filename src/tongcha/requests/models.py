"""Requests: what someone asked the hub to find out or do across platforms."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, String
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
