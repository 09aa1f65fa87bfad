"""Every platforms query: platforms, their apps and keys, seen callback signatures, and
the fan-out's tasks (the hub's own signing keys are read in ``kit.keys``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tongcha.kit.db import find_by_code, is_postgres
from tongcha.platforms.models import (
    FINAL_STATES,
    Platform,
    PlatformApp,
    PlatformKey,
    PlatformStatus,
    PlatformTask,
    SeenToken,
    TaskState,
)
from tongcha.requests.models import Request, RequestKind, RequestState
from tongcha.sdk.protocol import Operation

# ----- platforms --------------------------------------------------------------------


def platform_by_code(session: Session, code: str) -> Platform | None:
    return find_by_code(session, Platform, code)


def platform_by_id(session: Session, platform_id: int) -> Platform | None:
    return session.get(Platform, platform_id)


def platforms_by_id(session: Session, platform_ids: Collection[int]) -> dict[int, Platform]:
    """These platforms, each under its id."""
    return {p.id: p for p in session.scalars(select(Platform).where(Platform.id.in_(platform_ids)))}


def code_reading_as(session: Session, code: str) -> str | None:
    """The registered platform code that reads as ``code`` in capitals (the same code, or
    one registered in lower case before codes were capitals only), or None."""
    return session.scalars(select(Platform.code).where(func.upper(Platform.code) == code.upper())).first()


def code_taken(session: Session, code: str) -> bool:
    """Whether a platform with this code is registered."""
    return session.scalars(select(Platform.id).where(Platform.code == code)).first() is not None


def platforms(session: Session) -> list[Platform]:
    """Every registered platform, by code."""
    return list(session.scalars(select(Platform).order_by(Platform.code)))


def callable_platforms(session: Session) -> list[Platform]:
    """Platforms the hub can fan out to: active, with a base URL."""
    return list(
        session.scalars(
            select(Platform)
            .where(Platform.status == PlatformStatus.active.value, Platform.base_url.is_not(None))
            .order_by(Platform.code)
        )
    )


# ----- apps -------------------------------------------------------------------------


def apps_of(session: Session, platform_id: int) -> list[PlatformApp]:
    return list(
        session.scalars(select(PlatformApp).where(PlatformApp.platform_id == platform_id).order_by(PlatformApp.id))
    )


def all_apps(session: Session) -> list[PlatformApp]:
    """Every platform's apps, in the order they were added."""
    return list(session.scalars(select(PlatformApp).order_by(PlatformApp.id)))


def app_exists(session: Session, platform_id: int, code: str) -> bool:
    stmt = select(PlatformApp.id).where(PlatformApp.platform_id == platform_id, PlatformApp.code == code)
    return session.scalars(stmt).first() is not None


# ----- the platforms' callback keys -------------------------------------------------


def key_exists(session: Session, platform_id: int, kid: str) -> bool:
    """Whether the platform has a key with this kid, live or retired."""
    stmt = select(PlatformKey.id).where(PlatformKey.platform_id == platform_id, PlatformKey.kid == kid)
    return session.scalars(stmt).first() is not None


def live_key(session: Session, platform_id: int, kid: str) -> PlatformKey | None:
    return session.scalars(
        select(PlatformKey).where(
            PlatformKey.platform_id == platform_id, PlatformKey.kid == kid, PlatformKey.retired_at.is_(None)
        )
    ).first()


def live_jwks(session: Session, platform_id: int) -> list[dict[str, Any]]:
    """The public JWKs of the platform's live keys."""
    return list(
        session.scalars(
            select(PlatformKey.jwk).where(PlatformKey.platform_id == platform_id, PlatformKey.retired_at.is_(None))
        )
    )


def live_kids(session: Session, platform_id: int) -> list[str]:
    return list(
        session.scalars(
            select(PlatformKey.kid).where(PlatformKey.platform_id == platform_id, PlatformKey.retired_at.is_(None))
        )
    )


def remember_token(session: Session, *, issuer: str, jti: str, expires_at: datetime) -> None:
    """Record a callback signature as seen; IntegrityError when it was seen before (a replay).

    The caller runs this in a savepoint, so a replay leaves its transaction usable.
    """
    session.add(SeenToken(issuer=issuer, jti=jti, expires_at=expires_at))
    session.flush()


def forget_expired_tokens(session: Session, now: datetime) -> int:
    """Drop the seen callback signatures that expired before now. Returns how many."""
    result = session.execute(delete(SeenToken).where(SeenToken.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)


# ----- the fan-out's tasks ----------------------------------------------------------


def add_tasks(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert a request's tasks, each row a dict of ``PlatformTask`` columns."""
    # Core rather than ORM objects: a fan-out writes many rows and this is its hot path.
    if rows:
        session.execute(insert(PlatformTask), rows)


def add_tasks_once(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert tasks, each row a dict of ``PlatformTask`` columns, leaving out any whose
    ``task_id`` is stored already (one written by a recorder that got there first)."""
    if not rows:
        return
    dialect = postgresql if is_postgres(session) else sqlite
    session.execute(dialect.insert(PlatformTask).on_conflict_do_nothing(index_elements=["task_id"]), rows)


def answered_unbind_listings(session: Session, task_ids: Collection[str]) -> list[PlatformTask]:
    """Of these tasks, the listings of unbind requests that are answered."""
    return list(
        session.scalars(
            select(PlatformTask)
            .join(Request, Request.id == PlatformTask.request_id)
            .where(
                PlatformTask.task_id.in_(task_ids),
                PlatformTask.operation == Operation.bindings_list.value,
                PlatformTask.state == TaskState.done.value,
                Request.kind == RequestKind.unbind.value,
            )
        )
    )


def due_tasks(session: Session, now: datetime, limit: int) -> list[PlatformTask]:
    """Up to ``limit`` unfinished tasks whose ``run_after`` has come, earliest first; on
    PostgreSQL locked for the transaction, skipping those another claimer holds."""
    stmt = (
        select(PlatformTask)
        .where(
            PlatformTask.state.in_(
                (TaskState.pending.value, TaskState.in_flight.value, TaskState.awaiting_callback.value)
            ),
            PlatformTask.run_after <= now,
        )
        .order_by(PlatformTask.run_after, PlatformTask.id)
        .limit(limit)
    )
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


_RECORD = (
    update(PlatformTask)
    .where(
        PlatformTask.task_id == bindparam("b_task_id"),
        # The fence: only the attempt that still holds the task may write its outcome.
        PlatformTask.state == TaskState.in_flight.value,
        PlatformTask.attempts == bindparam("b_attempt"),
    )
    .values(
        state=bindparam("state"),
        attempts=bindparam("attempts"),
        run_after=bindparam("run_after"),
        finished_at=bindparam("finished_at"),
        answer=bindparam("answer", type_=PlatformTask.__table__.c.answer.type),
        answered_via=bindparam("answered_via"),
        error_code=bindparam("error_code"),
        last_error=bindparam("last_error"),
    )
)


def record_outcomes(session: Session, params: list[dict[str, Any]]) -> None:
    """Write calls' outcomes in one batch. Each row names the task and attempt it fences on
    (``b_task_id``, ``b_attempt``) and the new ``state``, ``attempts``, ``run_after``,
    ``finished_at``, ``answer``, ``answered_via``, ``error_code`` and ``last_error``; a
    row whose attempt no longer holds its task (in flight) changes nothing."""
    if is_postgres(session):
        # An outcome lost in a crash is only re-asked (the lease runs out, the task goes
        # out again under the same task_id, the platform repeats its stored answer), so
        # this commit need not wait for the disk.
        session.execute(text("SET LOCAL synchronous_commit = off"))
    session.connection().execute(_RECORD.execution_options(synchronize_session=False), params)


def complete_request_if_settled(session: Session, request_pk: int, now: datetime) -> int | None:
    """Mark the request completed if none of its tasks is still open, in one statement.
    Returns its ``notify_number`` when this call completed it and it has one, else None."""
    # One comparison per final state rather than NOT IN: an IN list is expanded into the
    # SQL on every execution, which cost this once-per-fan-out statement a third of its time.
    unfinished = [PlatformTask.state != state for state in FINAL_STATES]
    still_open = select(PlatformTask.id).where(PlatformTask.request_id == request_pk, *unfinished).exists()
    completed = (
        session.connection()
        .execute(
            update(Request)
            .where(Request.id == request_pk, Request.state != RequestState.completed.value, ~still_open)
            .values(state=RequestState.completed.value, completed_at=now)
            .returning(Request.notify_number)
        )
        .first()
    )
    return completed.notify_number if completed is not None else None


def mark_overdue(session: Session, now: datetime) -> int:
    """Flag open tasks whose platform has missed its due time. Returns how many."""
    result = session.connection().execute(
        update(PlatformTask)
        .where(
            PlatformTask.due_by < now,
            PlatformTask.overdue_at.is_(None),
            PlatformTask.state.not_in(FINAL_STATES),
        )
        .values(overdue_at=now)
    )
    return int(result.rowcount or 0)


def tasks_with_platforms(session: Session, request_pk: int) -> Sequence[Row[PlatformTask, str, str]]:
    """The request's tasks, each with its platform's code and name, by platform code."""
    return session.execute(
        select(PlatformTask, Platform.code, Platform.name)
        .join(Platform, Platform.id == PlatformTask.platform_id)
        .where(PlatformTask.request_id == request_pk)
        .order_by(Platform.code)
    ).all()


def task_by_public_id(session: Session, task_id: str) -> PlatformTask | None:
    return session.scalars(select(PlatformTask).where(PlatformTask.task_id == task_id)).first()
