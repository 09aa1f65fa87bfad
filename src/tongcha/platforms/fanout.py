"""Fan-out: one durable task per platform, stored with its request in one transaction.

A task's life: ``in_flight`` while someone calls the platform (its ``run_after`` is then
the lease's end, so a crashed caller's task becomes due again by itself), ``pending``
while it waits for a retry, ``awaiting_callback`` after the platform answered 202, and
finally ``done`` or ``failed``. Every write of an outcome is fenced on the attempt that
produced it, so a late or duplicate answer changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from tongcha.kit import jobs
from tongcha.kit.db import add_row
from tongcha.platforms import repository as repo
from tongcha.platforms.models import FINAL_STATES, PlatformStatus, PlatformTask, TaskState
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


class Callee(Protocol):
    """What fan-out needs of a platform: a registry row, or a cached copy of one."""

    @property
    def id(self) -> int: ...
    @property
    def code(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def timeout_ms(self) -> int: ...
    @property
    def max_concurrency(self) -> int: ...
    @property
    def sla_overrides(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Target:
    """One task to open: which platform, what to send it, and when it is due."""

    platform: Callee
    body: dict[str, Any]
    due_by: datetime | None = None
    # Another call than the request's own (an unbind's listings).
    operation: Operation | None = None


def each(platforms: Sequence[Callee], body: dict[str, Any]) -> list[Target]:
    """The same body to every platform."""
    return [Target(p, body) for p in platforms]


@dataclass(frozen=True, slots=True)
class CalleeRow:
    id: int
    code: str
    name: str
    base_url: str | None
    timeout_ms: int
    max_concurrency: int
    sla_overrides: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskCall:
    """Everything needed to make one call, without holding a session."""

    task_id: str
    request_pk: int
    platform_id: int
    platform_code: str
    platform_name: str
    base_url: str
    operation: Operation
    body: bytes
    timeout_s: float
    max_concurrency: int
    attempt: int
    give_up_at: datetime


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


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _call(
    platform: Callee,
    *,
    task_id: str,
    request_pk: int,
    operation: Operation,
    body: dict[str, Any],
    attempt: int,
    give_up_at: datetime,
) -> TaskCall:
    return TaskCall(
        task_id=task_id,
        request_pk=request_pk,
        platform_id=platform.id,
        platform_code=platform.code,
        platform_name=platform.name,
        base_url=platform.base_url or "",
        operation=operation,
        body=_encode(body),
        timeout_s=platform.timeout_ms / 1000,
        max_concurrency=platform.max_concurrency,
        attempt=attempt,
        give_up_at=give_up_at,
    )


def open_request(
    session: Session,
    *,
    kind: RequestKind,
    params: dict[str, Any],
    operation: Operation,
    targets: Sequence[Target],
    now: datetime,
    give_up_after: timedelta,
    claim_for: timedelta | None = None,
    holder_digest: str | None = None,
    due_by: datetime | None = None,
    notify_number: int | None = None,
) -> tuple[Request, list[TaskCall]]:
    """Store a request and one task per platform (flushed, not committed).

    With ``claim_for`` the caller claims every task at once (to call the platforms
    itself, right after the commit): tasks start ``in_flight`` under a lease of that
    length; otherwise they start ``pending`` for the workers.
    """
    request = Request(
        public_id=new_public_id("r"),
        kind=kind.value,
        state=RequestState.open.value if targets else RequestState.completed.value,
        params=params,
        created_at=now,
        completed_at=None if targets else now,
        holder_digest=holder_digest,
        due_by=due_by,
        notify_number=notify_number,
    )
    add_row(session, request)
    rows, calls = [], []
    for target in targets:
        # A task with a due time is tried until ``give_up_after`` past it, never less: a
        # platform down over a weekend still gets an unbind that is due in five working days.
        give_up_at = max(now, target.due_by or now) + give_up_after
        platform = target.platform
        task_id = new_public_id("t")
        body = {"task_id": task_id, **target.body}
        call = target.operation or operation
        rows.append(
            _task_row(
                request.id,
                platform.id,
                call,
                body,
                now=now,
                give_up_at=give_up_at,
                due_by=target.due_by,
                claim_for=claim_for,
            )
        )
        calls.append(
            _call(
                platform,
                task_id=task_id,
                request_pk=request.id,
                operation=call,
                body=body,
                attempt=1 if claim_for else 0,
                give_up_at=give_up_at,
            )
        )
    repo.add_tasks(session, rows)
    return request, calls


def _task_row(
    request_pk: int,
    platform_id: int,
    operation: Operation,
    body: dict[str, Any],
    *,
    now: datetime,
    give_up_at: datetime,
    due_by: datetime | None,
    claim_for: timedelta | None = None,
) -> dict[str, Any]:
    """A new task's columns (``body`` names its ``task_id``): ``in_flight`` under a lease
    of ``claim_for`` when its opener calls it, else ``pending`` for the workers."""
    return {
        "task_id": body["task_id"],
        "request_id": request_pk,
        "platform_id": platform_id,
        "operation": operation.value,
        "body": body,
        "state": TaskState.in_flight.value if claim_for else TaskState.pending.value,
        "attempts": 1 if claim_for else 0,
        "run_after": now + claim_for if claim_for else now,
        "give_up_at": give_up_at,
        "created_at": now,
        "due_by": due_by,
    }


def claim_due(session: Session, now: datetime, limit: int) -> list[TaskCall]:
    """Claim up to ``limit`` due tasks for this caller (SKIP LOCKED on PostgreSQL)."""
    tasks = repo.due_tasks(session, now, limit)
    if not tasks:
        return []
    platforms = repo.platforms_by_id(session, {t.platform_id for t in tasks})
    calls = []
    given_up: set[int] = set()
    for task in tasks:
        platform = platforms[task.platform_id]
        if now >= task.give_up_at:
            _finish(task, TaskState.failed, now)
            task.error_code = task.error_code or "gave_up"
            task.last_error = f"gave up after {task.attempts} attempts: {task.last_error or 'no answer'}"
            given_up.add(task.request_id)
            continue
        if platform.status != PlatformStatus.active.value or not platform.base_url:
            # Held, not lost: it goes out when the platform is resumed.
            task.state = TaskState.pending.value
            task.run_after = now + timedelta(minutes=1)
            continue
        task.state = TaskState.in_flight.value
        task.attempts += 1
        task.run_after = now + timedelta(milliseconds=platform.timeout_ms) + LEASE_MARGIN
        calls.append(
            _call(
                platform,
                task_id=task.task_id,
                request_pk=task.request_id,
                operation=Operation(task.operation),
                body=task.body,
                attempt=task.attempts,
                give_up_at=task.give_up_at,
            )
        )
    session.flush()
    # After the flush: completion asks the database whether any task is still open.
    for request_pk in sorted(given_up):
        _maybe_complete(session, request_pk, now)
    return calls


def _finish(task: PlatformTask, state: TaskState, now: datetime) -> None:
    task.state = state.value
    task.finished_at = now
    task.run_after = now


def transition(call: TaskCall, outcome: Outcome, now: datetime) -> dict[str, Any]:
    """The columns a task in flight gets from one outcome, computed without loading the
    row: the call carries what the rules need (its attempt and give-up time)."""
    values: dict[str, Any] = {
        "state": TaskState.pending.value,
        "attempts": call.attempt,
        "run_after": now,
        "finished_at": None,
        "answer": None,
        "answered_via": None,
        "error_code": outcome.error_code,
        "last_error": outcome.message,
    }
    if outcome.kind == "answered":
        values.update(state=TaskState.done.value, finished_at=now, answer=outcome.answer, answered_via="sync")
    elif outcome.kind == "accepted":
        values.update(state=TaskState.awaiting_callback.value, run_after=now + CALLBACK_WAIT)
    elif outcome.kind == "deferred":
        values.update(attempts=max(0, call.attempt - 1), run_after=outcome.retry_at or now)
    else:
        out_of_tries = not outcome.transient and call.attempt >= PERMANENT_ATTEMPTS
        retry_at = now + retry_delay(call.attempt)
        if out_of_tries or retry_at >= call.give_up_at:
            values.update(state=TaskState.failed.value, finished_at=now)
        else:
            values.update(run_after=retry_at)
    return values


def record(
    session: Session,
    results: Sequence[tuple[TaskCall, Outcome]],
    now: datetime,
    *,
    transitions: Sequence[dict[str, Any]] | None = None,
) -> None:
    """Write the outcomes of calls. An outcome whose attempt no longer holds the task
    (its lease ran out and someone else took over, or a callback finished it) is
    dropped, so a late answer never overwrites a newer one."""
    if transitions is None:
        transitions = [transition(call, outcome, now) for call, outcome in results]
    params, requests = [], set()
    for (call, _), values in zip(results, transitions, strict=True):
        params.append({"b_task_id": call.task_id, "b_attempt": call.attempt, **values})
        requests.add(call.request_pk)
    if not params:
        return
    repo.record_outcomes(session, params)
    listed = [c.task_id for (c, o) in results if c.operation is Operation.bindings_list and o.kind == "answered"]
    if listed:
        _unbind_what_was_listed(session, listed, now)
    for request_pk in requests:
        _maybe_complete(session, request_pk, now)


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
        if task.operation == Operation.bindings_list.value:
            session.flush()
            _unbind_what_was_listed(session, [task.task_id], now)
    else:
        assert error is not None
        _finish(task, TaskState.failed, now)
        task.error_code = "platform_refused"
        task.last_error = f"{error[0]}: {error[1]}"[:1000]
    session.flush()
    _maybe_complete(session, task.request_id, now)
    return True


def _follow_up_id(task_id: str, account_ref: str) -> str:
    """The task id of a listing's unbind of one account: the same for the same listing
    and account, so recording a listing's answer twice opens nothing twice."""
    digest = hashlib.sha256(f"{task_id}\n{account_ref}".encode()).digest()[:18]
    return "t_" + base64.urlsafe_b64encode(digest).decode()


def aware_moment(value: object) -> datetime | None:
    """A time a platform wrote (RFC 3339), or None when it is not one with an offset."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _unbind_what_was_listed(session: Session, task_ids: Sequence[str], now: datetime) -> None:
    """An unbind's listing of a stretch others held the number in, once answered: one
    ``accounts/action`` unbind task per account it listed, for the same platform, due
    when the listing was. Written in the transaction that records the answer, before the
    request may complete. Only accounts the listing places inside its stretch are
    unbound: one bound at any other time may be the current holder's."""
    rows: dict[str, dict[str, Any]] = {}
    for listing in repo.answered_unbind_listings(session, task_ids):
        low, high = aware_moment(listing.body.get("bound_from")), aware_moment(listing.body.get("bound_until"))
        if low is None or high is None or not isinstance(listing.answer, dict):
            continue
        # As long to try as the listing had, counted from now: its answer may come late.
        window = listing.give_up_at - max(listing.created_at, listing.due_by or listing.created_at)
        give_up_at = max(listing.give_up_at, now + window)
        for account in listing.answer.get("accounts") or ():
            ref = account.get("account_ref") if isinstance(account, dict) else None
            bound_at = aware_moment(account.get("bound_at")) if isinstance(account, dict) else None
            if not isinstance(ref, str) or not 0 < len(ref) <= 200 or bound_at is None or not low <= bound_at < high:
                continue
            task_id = _follow_up_id(listing.task_id, ref)
            body = {"task_id": task_id, "number": listing.body["number"], "account_ref": ref, "action": "unbind"}
            rows[task_id] = _task_row(
                listing.request_id,
                listing.platform_id,
                Operation.account_action,
                body,
                now=now,
                give_up_at=give_up_at,
                due_by=listing.due_by,
            )
    repo.add_tasks_once(session, list(rows.values()))


def _maybe_complete(session: Session, request_pk: int, now: datetime) -> None:
    """Mark the request completed once none of its tasks is still open (one statement);
    a citizen's request then gets its result SMS, queued in the same transaction."""
    notify_number = repo.complete_request_if_settled(session, request_pk, now)
    if notify_number is not None:
        jobs.enqueue(session, NOTIFY_JOB, {"request_id": request_pk}, now)


NOTIFY_JOB = "requests.notify"


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
    number: str | None = None
    due_by: datetime | None = None
    overdue: bool = False


@dataclass
class Progress:
    request_id: str
    kind: str
    state: str
    params: dict[str, Any]
    created_at: datetime
    completed_at: datetime | None
    tasks: list[TaskView] = field(default_factory=list)
    due_by: datetime | None = None

    @property
    def pending(self) -> list[str]:
        """The platforms with a task still open, each once (a platform may have several:
        an inquiry's numbers, an unbind's listings)."""
        return list(dict.fromkeys(t.platform for t in self.tasks if t.state not in FINAL_STATES))


def progress(session: Session, request: Request) -> Progress:
    rows = repo.tasks_with_platforms(session, request.id)
    return Progress(
        request_id=request.public_id,
        kind=request.kind,
        state=request.state,
        params=request.params,
        created_at=request.created_at,
        completed_at=request.completed_at,
        due_by=request.due_by,
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
                number=task.body.get("number"),
                due_by=task.due_by,
                overdue=task.overdue_at is not None,
            )
            for task, code, name in rows
        ],
    )
