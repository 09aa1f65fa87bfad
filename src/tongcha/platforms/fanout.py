"""Fan-out: one durable task per platform, stored with its request in one transaction.

A task's life: ``in_flight`` while someone calls the platform (its ``run_after`` is then
the lease's end, so a crashed caller's task becomes due again by itself), ``pending``
while it waits for a retry, ``awaiting_callback`` after the platform answered 202, and
finally ``done`` or ``failed``. Every write of an outcome is fenced on the attempt that
produced it, so a late or duplicate answer changes nothing.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tongcha.kit.db import is_postgres
from tongcha.platforms.models import FINAL_STATES, Platform, PlatformStatus, PlatformTask, TaskState
from tongcha.requests.models import Request, RequestKind, RequestState
from tongcha.sdk.protocol import Operation

# Failures that say "not now" (timeouts, 5xx, refused connections) are retried until the
# task's give-up time; failures that say "not like this" (4xx, malformed answers) only
# this many times, since retrying them rarely helps.
PERMANENT_ATTEMPTS = 5
RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 60.0
# After a 202, how long the hub waits for the callback before asking again.
CALLBACK_WAIT = timedelta(minutes=10)
# A lease's margin beyond the call's own timeout.
LEASE_MARGIN = timedelta(seconds=5)


def new_public_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(18)}"


@dataclass(frozen=True, slots=True)
class TaskCall:
    """Everything needed to make one call, without holding a session."""

    pk: int
    task_id: str
    request_pk: int
    platform_id: int
    platform_code: str
    base_url: str
    operation: Operation
    body: bytes
    timeout_s: float
    max_concurrency: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # answered | accepted | failed | deferred
    answer: dict[str, Any] | None = None
    error_code: str | None = None
    message: str | None = None
    transient: bool = True
    # For ``deferred`` (circuit open): when to try, without counting an attempt.
    retry_at: datetime | None = None

    @staticmethod
    def answered(answer: dict[str, Any]) -> Outcome:
        return Outcome("answered", answer=answer)

    @staticmethod
    def accepted() -> Outcome:
        return Outcome("accepted")

    @staticmethod
    def failed(code: str, message: str, *, transient: bool) -> Outcome:
        return Outcome("failed", error_code=code, message=message[:1000], transient=transient)

    @staticmethod
    def deferred(until: datetime, why: str) -> Outcome:
        return Outcome("deferred", error_code="circuit_open", message=why, retry_at=until)


def retry_delay(attempt: int) -> timedelta:
    """Exponential back-off with equal jitter: never zero, never past the cap."""
    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))


def _call_of(task: PlatformTask, platform: Platform) -> TaskCall:
    return TaskCall(
        pk=task.id,
        task_id=task.task_id,
        request_pk=task.request_id,
        platform_id=platform.id,
        platform_code=platform.code,
        base_url=platform.base_url or "",
        operation=Operation(task.operation),
        body=json.dumps(task.body, ensure_ascii=False, separators=(",", ":")).encode(),
        timeout_s=platform.timeout_ms / 1000,
        max_concurrency=platform.max_concurrency,
        attempt=task.attempts,
    )


def open_request(
    session: Session,
    *,
    kind: RequestKind,
    params: dict[str, Any],
    operation: Operation,
    platforms: Sequence[Platform],
    body_for: Callable[[Platform], dict[str, Any]],
    now: datetime,
    give_up_after: timedelta,
    claim_for: timedelta | None = None,
) -> tuple[Request, list[TaskCall]]:
    """Store a request and one task per platform (flushed, not committed).

    With ``claim_for`` the caller claims every task at once (to call the platforms
    itself, right after the commit): tasks start ``in_flight`` under a lease of that
    length; otherwise they start ``pending`` for the workers.
    """
    request = Request(
        public_id=new_public_id("r"),
        kind=kind.value,
        state=RequestState.open.value,
        params=params,
        created_at=now,
    )
    session.add(request)
    session.flush()
    tasks: list[tuple[PlatformTask, Platform]] = []
    for platform in platforms:
        task_id = new_public_id("t")
        task = PlatformTask(
            task_id=task_id,
            request_id=request.id,
            platform_id=platform.id,
            operation=operation.value,
            body={"task_id": task_id, **body_for(platform)},
            state=TaskState.in_flight.value if claim_for else TaskState.pending.value,
            attempts=1 if claim_for else 0,
            run_after=now + claim_for if claim_for else now,
            give_up_at=now + give_up_after,
            created_at=now,
        )
        session.add(task)
        tasks.append((task, platform))
    if not tasks:
        request.state = RequestState.completed.value
        request.completed_at = now
    session.flush()
    return request, [_call_of(task, platform) for task, platform in tasks]


def claim_due(session: Session, now: datetime, limit: int) -> list[TaskCall]:
    """Claim up to ``limit`` due tasks for this caller (SKIP LOCKED on PostgreSQL)."""
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
    tasks = list(session.scalars(stmt))
    if not tasks:
        return []
    platforms = {
        p.id: p for p in session.scalars(select(Platform).where(Platform.id.in_({t.platform_id for t in tasks})))
    }
    calls = []
    for task in tasks:
        platform = platforms[task.platform_id]
        if now >= task.give_up_at:
            _finish(task, TaskState.failed, now)
            task.error_code = task.error_code or "gave_up"
            task.last_error = f"gave up after {task.attempts} attempts: {task.last_error or 'no answer'}"
            _maybe_complete(session, task.request_id, now)
            continue
        if platform.status != PlatformStatus.active.value or not platform.base_url:
            # Held, not lost: it goes out when the platform is resumed.
            task.state = TaskState.pending.value
            task.run_after = now + timedelta(minutes=1)
            continue
        task.state = TaskState.in_flight.value
        task.attempts += 1
        task.run_after = now + timedelta(milliseconds=platform.timeout_ms) + LEASE_MARGIN
        calls.append(_call_of(task, platform))
    session.flush()
    return calls


def _finish(task: PlatformTask, state: TaskState, now: datetime) -> None:
    task.state = state.value
    task.finished_at = now
    task.run_after = now


def _apply(task: PlatformTask, outcome: Outcome, now: datetime) -> None:
    if outcome.kind == "answered":
        _finish(task, TaskState.done, now)
        task.answer = outcome.answer
        task.answered_via = "sync"
        task.error_code = None
    elif outcome.kind == "accepted":
        task.state = TaskState.awaiting_callback.value
        task.run_after = now + CALLBACK_WAIT
    elif outcome.kind == "deferred":
        task.state = TaskState.pending.value
        task.attempts = max(0, task.attempts - 1)
        task.run_after = outcome.retry_at or now
        task.error_code = outcome.error_code
        task.last_error = outcome.message
    else:
        task.error_code = outcome.error_code
        task.last_error = outcome.message
        out_of_tries = not outcome.transient and task.attempts >= PERMANENT_ATTEMPTS
        retry_at = now + retry_delay(task.attempts)
        if out_of_tries or retry_at >= task.give_up_at:
            _finish(task, TaskState.failed, now)
        else:
            task.state = TaskState.pending.value
            task.run_after = retry_at


def record(session: Session, results: Iterable[tuple[TaskCall, Outcome]], now: datetime) -> int:
    """Write outcomes of calls; an outcome whose attempt is no longer the task's current
    one (the lease ran out and someone else took over) is dropped. Returns how many
    were written."""
    by_pk = {call.pk: (call, outcome) for call, outcome in results}
    if not by_pk:
        return 0
    stmt = select(PlatformTask).where(PlatformTask.id.in_(by_pk))
    if is_postgres(session):
        stmt = stmt.with_for_update()
    written = 0
    requests = set()
    for task in session.scalars(stmt):
        call, outcome = by_pk[task.id]
        if task.state != TaskState.in_flight.value or task.attempts != call.attempt:
            continue
        _apply(task, outcome, now)
        written += 1
        if task.state in FINAL_STATES:
            requests.add(task.request_id)
    session.flush()
    for request_pk in requests:
        _maybe_complete(session, request_pk, now)
    return written


def record_callback(
    session: Session, task: PlatformTask, *, answer: dict[str, Any] | None, error: tuple[str, str] | None, now: datetime
) -> bool:
    """Record a platform's signed callback. False when the task was final already
    (a duplicate or late callback), in which case nothing changes."""
    if task.state in FINAL_STATES:
        return False
    if answer is not None:
        _finish(task, TaskState.done, now)
        task.answer = answer
        task.answered_via = "callback"
        task.error_code = None
    else:
        assert error is not None
        _finish(task, TaskState.failed, now)
        task.error_code = "platform_refused"
        task.last_error = f"{error[0]}: {error[1]}"[:1000]
    session.flush()
    _maybe_complete(session, task.request_id, now)
    return True


def _maybe_complete(session: Session, request_pk: int, now: datetime) -> None:
    open_task = session.scalars(
        select(PlatformTask.id)
        .where(PlatformTask.request_id == request_pk, PlatformTask.state.not_in(FINAL_STATES))
        .limit(1)
    ).first()
    if open_task is None:
        request = session.get(Request, request_pk)
        if request is not None and request.state != RequestState.completed.value:
            request.state = RequestState.completed.value
            request.completed_at = now
            session.flush()


@dataclass
class TaskView:
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


@dataclass
class Progress:
    request_id: str
    kind: str
    state: str
    params: dict[str, Any]
    created_at: datetime
    completed_at: datetime | None
    tasks: list[TaskView] = field(default_factory=list)

    @property
    def pending(self) -> list[str]:
        return [t.platform for t in self.tasks if t.state not in FINAL_STATES]


def progress(session: Session, request: Request) -> Progress:
    rows = session.execute(
        select(PlatformTask, Platform.code, Platform.name)
        .join(Platform, Platform.id == PlatformTask.platform_id)
        .where(PlatformTask.request_id == request.id)
        .order_by(Platform.code)
    ).all()
    return Progress(
        request_id=request.public_id,
        kind=request.kind,
        state=request.state,
        params=request.params,
        created_at=request.created_at,
        completed_at=request.completed_at,
        tasks=[
            TaskView(
                platform=code,
                platform_name=name,
                task_id=task.task_id,
                state=task.state,
                attempts=task.attempts,
                answer=task.answer,
                answered_via=task.answered_via,
                error_code=task.error_code,
                error=task.last_error,
                finished_at=task.finished_at,
            )
            for task, code, name in rows
        ],
    )


def request_by_public_id(session: Session, public_id: str) -> Request | None:
    return session.scalars(select(Request).where(Request.public_id == public_id)).first()


def task_by_public_id(session: Session, task_id: str) -> PlatformTask | None:
    return session.scalars(select(PlatformTask).where(PlatformTask.task_id == task_id)).first()


def forget_expired_tokens(session: Session, now: datetime) -> int:
    from tongcha.platforms.models import SeenToken

    result = session.execute(delete(SeenToken).where(SeenToken.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)
