"""Every requests query: a citizen's requests, the operator's list, and each request's tasks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.orm import Session

from tongcha.kit.db import is_postgres
from tongcha.platforms.models import FINAL_STATES, Platform, PlatformTask, TaskState
from tongcha.requests.models import Request, RequestKind, RequestState

# The first key of the two-key advisory locks on one holder's requests ("tcrq").
_HOLDER_REQUESTS_LOCK = 0x7463_7271


def request_by_id(session: Session, request_id: int) -> Request | None:
    return session.get(Request, request_id)


def request_by_public_id(session: Session, public_id: str) -> Request | None:
    """Any request by its public id (the operator's view)."""
    return session.scalars(select(Request).where(Request.public_id == public_id)).first()


def request_of(session: Session, holder: str, public_id: str) -> Request | None:
    """The holder's request with this public id; None for a missing one or another holder's."""
    return session.scalars(
        select(Request).where(Request.public_id == public_id, Request.holder_digest == holder)
    ).first()


def requests_of(session: Session, holder: str, limit: int) -> list[Request]:
    """The holder's latest requests, newest first."""
    return list(
        session.scalars(select(Request).where(Request.holder_digest == holder).order_by(Request.id.desc()).limit(limit))
    )


def lock_holder_requests(session: Session, holder: str) -> None:
    """Hold the holder's requests for the rest of the transaction, so that two identical
    requests sent at once open one: the second waits, then finds the first. (SQLite's
    BEGIN IMMEDIATE already lets one writer in at a time.)"""
    if is_postgres(session):
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:holder))"),
            {"space": _HOLDER_REQUESTS_LOCK, "holder": holder},
        )


def open_requests_of(session: Session, holder: str, kind: RequestKind) -> list[Request]:
    """The holder's requests of this kind that are still open, newest first."""
    return list(
        session.scalars(
            select(Request)
            .where(
                Request.holder_digest == holder,
                Request.kind == kind.value,
                Request.state == RequestState.open.value,
            )
            .order_by(Request.id.desc())
        )
    )


def tasks_of(session: Session, request_id: int) -> list[PlatformTask]:
    """The request's platform tasks, in the order they were opened."""
    return list(
        session.scalars(select(PlatformTask).where(PlatformTask.request_id == request_id).order_by(PlatformTask.id))
    )


def answered_details(session: Session, holder: str, platform: str, limit: int = 50) -> list[tuple[Any, Any]]:
    """The holder's latest details requests answered by ``platform``: each request's
    params and the platform's answer, newest first."""
    rows = session.execute(
        select(Request.params, PlatformTask.answer)
        .join(PlatformTask, PlatformTask.request_id == Request.id)
        .join(Platform, Platform.id == PlatformTask.platform_id)
        .where(
            Request.holder_digest == holder,
            Request.kind == RequestKind.detail.value,
            Platform.code == platform,
            PlatformTask.state == TaskState.done.value,
        )
        .order_by(Request.id.desc())
        .limit(limit)
    )
    return [(row.params, row.answer) for row in rows]


def latest_requests(
    session: Session,
    *,
    limit: int,
    before: int | None = None,
    state: str | None = None,
    kind: str | None = None,
    overdue: bool = False,
    platform_id: int | None = None,
) -> list[Request]:
    """Requests newest first (by id), at most ``limit``, older than the request ``before``
    (an id) when given, filtered as asked: the operator's list."""
    query = select(Request).order_by(Request.id.desc()).limit(limit)
    if before is not None:
        query = query.where(Request.id < before)
    if state is not None:
        query = query.where(Request.state == state)
    if kind is not None:
        query = query.where(Request.kind == kind)
    if overdue:
        # Open tasks are few, and found by ix_platform_tasks_due (state first).
        open_states = [s.value for s in TaskState if s.value not in FINAL_STATES]
        late = select(PlatformTask.request_id).where(
            PlatformTask.state.in_(open_states), PlatformTask.overdue_at.is_not(None)
        )
        query = query.where(Request.id.in_(late))
    if platform_id is not None:
        asked = select(PlatformTask.id).where(
            PlatformTask.request_id == Request.id, PlatformTask.platform_id == platform_id
        )
        query = query.where(asked.exists())
    return list(session.scalars(query))


def task_states_of(session: Session, request_ids: Collection[int]) -> Sequence[Row[int, str, str, bool]]:
    """For each task of these requests: its request's id, its platform's code, its
    state and whether it was marked overdue; by request, then platform code."""
    if not request_ids:
        return []
    return session.execute(
        select(
            PlatformTask.request_id,
            Platform.code,
            PlatformTask.state,
            PlatformTask.overdue_at.is_not(None).label("overdue"),
        )
        .join(Platform, Platform.id == PlatformTask.platform_id)
        .where(PlatformTask.request_id.in_(request_ids))
        .order_by(PlatformTask.request_id, Platform.code)
    ).all()
