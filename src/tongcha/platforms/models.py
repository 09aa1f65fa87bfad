"""The platform registry, the hub's signing keys, and the per-platform tasks of fan-out."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tongcha.kit.db import Base, BigId, UtcDateTime


class PlatformStatus(StrEnum):
    active = "active"
    # Suspended: no new tasks go to it; what it owes is kept, not lost.
    suspended = "suspended"


class Platform(Base):
    """An internet enterprise: it asks the hub questions and answers the hub's calls."""

    __tablename__ = "platforms"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))  # English name
    name_zh: Mapped[str | None] = mapped_column(String(200), default=None)
    account_model: Mapped[str] = mapped_column(String(16), default="independent")
    # Where the hub calls it; None for a platform that only asks questions.
    base_url: Mapped[str | None] = mapped_column(String(500), default=None)
    status: Mapped[str] = mapped_column(String(16), default=PlatformStatus.active.value)
    timeout_ms: Mapped[int] = mapped_column(Integer, default=3000)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=32)
    # Working days per request kind where this platform's SLA differs from the default.
    sla_overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PlatformApp(Base):
    __tablename__ = "platform_apps"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"))
    code: Mapped[str] = mapped_column(String(32))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))

    __table_args__ = (UniqueConstraint("platform_id", "code"),)


class PlatformKey(Base):
    """A platform's public key: its callbacks must be signed by one that is not retired."""

    __tablename__ = "platform_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"))
    kid: Mapped[str] = mapped_column(String(128))
    jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    __table_args__ = (UniqueConstraint("platform_id", "kid"),)


class TaskState(StrEnum):
    pending = "pending"  # due at run_after
    in_flight = "in_flight"  # claimed until lease_until
    awaiting_callback = "awaiting_callback"  # the platform said 202; re-sent at run_after
    done = "done"
    failed = "failed"


FINAL_STATES = (TaskState.done.value, TaskState.failed.value)


class PlatformTask(Base):
    """One call the hub owes one platform for one request: the unit of fan-out."""

    __tablename__ = "platform_tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The idempotency key the platform sees.
    task_id: Mapped[str] = mapped_column(String(40), unique=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"))
    platform_id: Mapped[int] = mapped_column(ForeignKey("platforms.id"))
    operation: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When it is due: for a retry, a re-send after a 202, or the end of a claim's lease.
    run_after: Mapped[datetime] = mapped_column(UtcDateTime)
    give_up_at: Mapped[datetime] = mapped_column(UtcDateTime)
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    answered_via: Mapped[str | None] = mapped_column(String(16), default=None)
    error_code: Mapped[str | None] = mapped_column(String(40), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # The platform's SLA: when the citizen was promised its answer (working days).
    due_by: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)
    # Set by the overdue sweep when due_by passed with the task still open.
    overdue_at: Mapped[datetime | None] = mapped_column(UtcDateTime, default=None)

    __table_args__ = (
        Index("ix_platform_tasks_due", "state", "run_after"),
        Index("ix_platform_tasks_request", "request_id"),
    )


class SeenToken(Base):
    """Signature ids (jti) already accepted, kept until they expire: replay protection."""

    __tablename__ = "seen_tokens"

    issuer: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
