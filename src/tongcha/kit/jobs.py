"""Durable work: rows with a state and a due time, claimed by any number of workers.

A job is written in the same transaction as the change that causes it (the outbox), so
it exists if and only if the change committed. Workers claim due jobs with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the single writer lock does it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from tongcha.kit.clock import Clock
from tongcha.kit.db import UNAVAILABLE, Base, BigId, Outage, UtcDateTime, add_row, is_postgres

log = logging.getLogger("tongcha.jobs")

Handler = Callable[[Session, dict[str, Any], Clock], None]
HANDLERS: dict[str, Handler] = {}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    run_after: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=10)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Jobs that belong together (all sub-tasks of one request, say) share a group.
    group_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_jobs_due", "state", "run_after"),)


def register(kind: str) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return wrap


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    *,
    delay: timedelta = timedelta(0),
    max_attempts: int = 10,
    group_id: int | None = None,
) -> Job:
    job = Job(
        kind=kind,
        payload=payload,
        state="pending",
        run_after=now + delay,
        attempts=0,
        max_attempts=max_attempts,
        created_at=now,
        group_id=group_id,
    )
    return add_row(session, job)


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> timedelta:
    """Exponential back-off with full jitter (AWS architecture blog's recipe)."""
    return timedelta(seconds=random.uniform(0, min(cap, base * 2**attempt)))


def _claim_one(session: Session, now: datetime) -> Job | None:
    stmt = select(Job).where(Job.state == "pending", Job.run_after <= now).order_by(Job.run_after, Job.id).limit(1)
    if is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return session.scalars(stmt).first()


def run_due(sessions: sessionmaker[Session], clock: Clock, *, limit: int = 100) -> int:
    """Run up to ``limit`` due jobs, each in its own transaction. Returns how many ran."""
    ran = 0
    while ran < limit:
        with sessions() as session, session.begin():
            now = clock.now()
            job = _claim_one(session, now)
            if job is None:
                return ran
            handler = HANDLERS.get(job.kind)
            job.attempts += 1
            try:
                if handler is None:
                    raise LookupError(f"no handler for job kind {job.kind!r}")
                with session.begin_nested():
                    handler(session, job.payload, clock)
            except Exception as exc:  # a failing job must never stop the worker
                job.last_error = "".join(traceback.format_exception_only(exc)).strip()[:2000]
                if job.attempts >= job.max_attempts:
                    job.state = "failed"
                    job.finished_at = now
                    log.error("job %s (%s) failed for good: %s", job.id, job.kind, job.last_error)
                else:
                    job.run_after = now + backoff(job.attempts)
                    log.warning("job %s (%s) failed, retrying: %s", job.id, job.kind, job.last_error)
            else:
                job.state = "done"
                job.finished_at = now
        ran += 1
    return ran


def work_forever(
    sessions: sessionmaker[Session],
    clock: Clock,
    *,
    idle_sleep: float = 0.5,
    outage: Outage | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run jobs as they come due until ``stop``: through an outage of the database too,
    which it waits out (``outage``), so that no job is lost and none runs twice."""
    log.info("worker started")
    outage = outage or Outage("jobs")
    while stop is None or not stop.is_set():
        try:
            ran = run_due(sessions, clock)
        except UNAVAILABLE as exc:
            time.sleep(outage.wait(exc))
            continue
        outage.over()
        if ran == 0:
            time.sleep(idle_sleep)
