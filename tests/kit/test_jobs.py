"""The durable job queue: run once, retried with back-off, never run twice at once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit import jobs
from tongcha.kit.clock import Clock, FixedClock
from tongcha.kit.db import make_engine, make_sessionmaker
from tongcha.kit.jobs import Job


def kind(name: str) -> str:
    return f"test-{name}-{uuid.uuid4().hex[:6]}"


def job(sessions: sessionmaker[Session], job_id: int) -> Job:
    with sessions() as session:
        found = session.get(Job, job_id)
        assert found is not None
        session.expunge(found)
        return found


def enqueue(sessions: sessionmaker[Session], k: str, clock: FixedClock, **kw: Any) -> int:
    with sessions() as session, session.begin():
        return jobs.enqueue(session, k, {"n": 1}, clock.now(), **kw).id


def test_enqueued_job_runs_once_and_is_done(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    k = kind("once")
    calls: list[dict[str, Any]] = []

    @jobs.register(k)
    def handler(session: Session, payload: dict[str, Any], _: Clock) -> None:
        calls.append(payload)

    job_id = enqueue(sessions, k, clock)
    assert jobs.run_due(sessions, clock) == 1
    assert jobs.run_due(sessions, clock) == 0
    assert calls == [{"n": 1}]
    done = job(sessions, job_id)
    assert done.state == "done" and done.attempts == 1 and done.finished_at is not None


def test_delayed_job_waits_until_due(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    k = kind("delayed")
    calls: list[int] = []
    jobs.register(k)(lambda s, p, c: calls.append(1))
    enqueue(sessions, k, clock, delay=timedelta(minutes=5))
    assert jobs.run_due(sessions, clock) == 0
    clock.advance(timedelta(minutes=5))
    assert jobs.run_due(sessions, clock) == 1 and calls == [1]


def test_handler_writes_commit_with_the_job(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    k = kind("writes")

    @jobs.register(k)
    def handler(session: Session, payload: dict[str, Any], c: Clock) -> None:
        jobs.enqueue(session, k + "-child", {"from": payload["n"]}, c.now())

    enqueue(sessions, k, clock)
    jobs.run_due(sessions, clock)
    with sessions() as session:
        child = session.scalars(select(Job).where(Job.kind == k + "-child")).one()
        assert child.payload == {"from": 1} and child.state == "pending"


def test_failing_job_is_retried_with_back_off(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    k = kind("flaky")
    attempts: list[int] = []

    @jobs.register(k)
    def handler(session: Session, payload: dict[str, Any], _: Clock) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("platform unreachable")

    job_id = enqueue(sessions, k, clock, max_attempts=5)
    assert jobs.run_due(sessions, clock) == 1
    retry = job(sessions, job_id)
    assert retry.state == "pending" and retry.attempts == 1
    assert "platform unreachable" in (retry.last_error or "")
    assert retry.run_after >= clock.now()
    clock.advance(timedelta(minutes=10))
    assert jobs.run_due(sessions, clock) == 1
    assert job(sessions, job_id).state == "done" and len(attempts) == 2


def test_back_off_grows_and_is_capped() -> None:
    for attempt in range(12):
        delay = jobs.backoff(attempt, base=1.0, cap=300.0)
        assert timedelta(0) <= delay <= timedelta(seconds=min(300.0, 2.0**attempt))


def test_job_that_keeps_failing_ends_failed_after_max_attempts(
    sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    k = kind("broken")
    attempts: list[int] = []

    @jobs.register(k)
    def handler(session: Session, payload: dict[str, Any], _: Clock) -> None:
        attempts.append(1)
        raise ValueError("always")

    job_id = enqueue(sessions, k, clock, max_attempts=3)
    for _ in range(6):
        jobs.run_due(sessions, clock)
        clock.advance(timedelta(hours=1))
    failed = job(sessions, job_id)
    assert failed.state == "failed" and failed.attempts == 3 and len(attempts) == 3
    assert failed.finished_at is not None and "always" in (failed.last_error or "")


def test_failed_handler_rolls_back_its_own_writes(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    k = kind("half")

    @jobs.register(k)
    def handler(session: Session, payload: dict[str, Any], c: Clock) -> None:
        jobs.enqueue(session, k + "-child", {}, c.now())
        raise RuntimeError("after writing")

    enqueue(sessions, k, clock, max_attempts=1)
    jobs.run_due(sessions, clock)
    with sessions() as session:
        assert session.scalars(select(Job).where(Job.kind == k + "-child")).first() is None


def test_unknown_kind_is_retried_not_crashing(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    job_id = enqueue(sessions, kind("nobody-handles"), clock, max_attempts=1)
    assert jobs.run_due(sessions, clock) == 1
    assert job(sessions, job_id).state == "failed"


@pytest.fixture
def pg_sessions(pg_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(pg_url)
    yield make_sessionmaker(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM jobs WHERE kind LIKE 'test-race-%'"))
    engine.dispose()


def test_two_workers_on_postgres_never_run_the_same_job_twice(
    pg_sessions: sessionmaker[Session], clock: FixedClock
) -> None:
    sessions = pg_sessions
    k = kind("race")
    ran: list[int] = []
    guard = threading.Lock()

    @jobs.register(k)
    def handler(session: Session, payload: dict[str, Any], _: Clock) -> None:
        time.sleep(0.01)  # hold the claim while the other worker looks
        with guard:
            ran.append(payload["i"])

    with sessions() as session, session.begin():
        for i in range(40):
            jobs.enqueue(session, k, {"i": i}, clock.now())
    start = threading.Barrier(2)
    counts: list[int] = []

    def worker() -> None:
        start.wait()
        counts.append(jobs.run_due(sessions, clock, limit=1000))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(ran) == list(range(40))
    assert sum(counts) == 40
    assert all(c > 0 for c in counts), counts  # both workers took part
