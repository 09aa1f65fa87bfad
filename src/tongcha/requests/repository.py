"""Every requests query: a citizen's requests and each request's tasks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongcha.platforms.models import Platform, PlatformTask, TaskState
from tongcha.requests.models import Request, RequestKind


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
