"""The database goes away and comes back. Meanwhile every request to the hub that needs it
is a 503 in the one error shape, with ``Retry-After``, logged in one line; nothing is
half-written; the job and fan-out workers wait it out; and once the database is back
all of them go on without a restart.

PostgreSQL only: it is the store that runs as a server of its own and can go away under
a running hub. The outage is real: the test database stops taking connections and the
hub's open ones are ended by the server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import PG_ADMIN, bearer, fresh_pg_database
from tests.factories import BOB, ev
from tongcha.kit import jobs
from tongcha.kit.clock import Clock, FixedClock
from tongcha.kit.db import Outage
from tongcha.kit.keys import Keyring
from tongcha.kit.settings import Settings
from tongcha.platforms import fanout, service
from tongcha.platforms.dispatch import Dispatcher, FanoutWorker
from tongcha.platforms.models import PlatformTask
from tongcha.requests.models import RequestKind
from tongcha.sdk.protocol import Operation

N = "+8613800000001"


@pytest.fixture
def db_url() -> Iterator[str]:
    """A database of this test's own, so cutting it off touches nothing else."""
    with fresh_pg_database("tongcha_outage") as url:
        yield url


def _away(url: str, away: bool) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if away else "true"}')
        if away:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def _is_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"]["code"] == "UNAVAILABLE" and body["error"]["details"] == []
    assert r.headers["retry-after"] == "5"
    assert len(r.headers.get_list("x-correlator")) == 1


def test_while_the_database_is_away_the_hub_answers_503_and_then_comes_back(
    client: TestClient, parties: dict[str, str], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    platform, carrier = bearer(parties["JD"]), bearer(parties["CMCC"])
    check = f"/platform/v1/reassignments/{N}?since=2020-01-01"
    events = [ev("activated", N, "2019-05-01", BOB)]
    assert client.get(check, headers=platform).json()["result"] == "no_data"
    assert client.get("/healthz").json() == {"status": "ok"}

    _away(db_url, True)
    try:
        with caplog.at_level(logging.WARNING):
            _is_unavailable(client.get(check, headers=platform))
            _is_unavailable(client.post("/carrier/v1/events", json=events, headers=carrier))
            camara = {"phoneNumber": N, "specifiedDate": "2020-01-01"}
            _is_unavailable(client.post("/number-recycling/v0.2/check", json=camara, headers=platform))
            _is_unavailable(client.post("/v1/verifications", json={"phone": N, **BOB}))
            _is_unavailable(client.get("/healthz"))
        assert not [r for r in caplog.records if r.exc_info], "an outage is logged without tracebacks"
        assert any("database unavailable" in r.getMessage() for r in caplog.records)
    finally:
        _away(db_url, False)

    # Back: nothing of the refused batch was written, so sending it again takes it all.
    r = client.post("/carrier/v1/events", json=events, headers=carrier)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert client.get(check, headers=platform).json()["result"] == "no"
    assert client.get("/healthz").status_code == 200


def test_checks_go_on_when_the_server_ends_the_hubs_connections_and_stays_up(
    client: TestClient, parties: dict[str, str], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # As after a restart of the database server between two checks: the hub's open
    # connections, the check log's own among them, are gone, the server is there. The
    # hub takes new ones without a failed write to log (the pool pings; the check log's
    # own connection is tried once more on a new one).
    platform = bearer(parties["JD"])
    check = f"/platform/v1/reassignments/{N}?since=2020-01-01"
    assert client.get(check, headers=platform).status_code == 200
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
    assert ended is not None and ended[0] >= 1
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            r = client.get(check, headers=platform)
            assert r.status_code == 200, r.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


QUICK = {"first": 0.05, "cap": 0.2}  # back-off while the database is away, in seconds


def _outage_seen(caplog: pytest.LogCaptureFixture, what: str) -> bool:
    return any(r.getMessage().startswith(f"{what}: database unavailable") for r in caplog.records)


def test_the_job_worker_waits_out_an_outage_and_runs_the_jobs_after_it(
    db_url: str, sessions: sessionmaker[Session], clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    kind, ran = f"test-outage-{uuid.uuid4().hex[:6]}", []

    @jobs.register(kind)
    def handler(session: Session, payload: dict[str, Any], _: Clock) -> None:
        ran.append(payload["n"])

    stop = threading.Event()
    worker = threading.Thread(
        target=jobs.work_forever,
        args=(sessions, clock),
        kwargs={"idle_sleep": 0.05, "outage": Outage("jobs", **QUICK), "stop": stop},
        daemon=True,
    )
    with caplog.at_level(logging.WARNING):
        worker.start()
        _away(db_url, True)
        try:
            deadline = time.monotonic() + 10
            while not _outage_seen(caplog, "jobs"):
                assert time.monotonic() < deadline and worker.is_alive()
                time.sleep(0.05)
        finally:
            _away(db_url, False)
        with sessions() as session, session.begin():
            jobs.enqueue(session, kind, {"n": 1}, clock.now())
        deadline = time.monotonic() + 10
        while ran != [1]:
            assert time.monotonic() < deadline, "the worker did not run the job after the outage"
            assert worker.is_alive()
            time.sleep(0.05)
    stop.set()
    worker.join(5)
    assert not [r for r in caplog.records if r.exc_info], "an outage is logged without tracebacks"


def test_the_fanout_worker_waits_out_an_outage_and_calls_platforms_after_it(
    db_url: str,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
    parties: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with sessions() as session, session.begin():  # JD, at an address where nothing listens
        service.update(session, "JD", service.PlatformUpdate(base_url="http://127.0.0.1:9", timeout_ms=500))

    def open_one() -> int:
        with sessions() as session, session.begin():
            request, _ = fanout.open_request(
                session,
                kind=RequestKind.probe,
                params={},
                operation=Operation.bindings_count,
                targets=fanout.each([service.get(session, "JD")], {"number": N, "bound_from": "2000-01-01"}),
                now=clock.now(),
                give_up_after=timedelta(days=2),
            )
            return request.id

    def attempts(request_pk: int) -> int:
        with sessions() as session:
            return sum(session.scalars(select(PlatformTask.attempts).where(PlatformTask.request_id == request_pk)))

    async def scenario() -> int:
        dispatcher = Dispatcher(Keyring(sessions, settings, clock), clock)
        worker = FanoutWorker(sessions, dispatcher, clock)
        stop = asyncio.Event()
        running = asyncio.create_task(
            worker.work_forever(idle_sleep=0.05, stop=stop, outage=Outage("fan-out", **QUICK))
        )
        try:
            await asyncio.to_thread(_away, db_url, True)
            try:
                deadline = time.monotonic() + 10
                while not _outage_seen(caplog, "fan-out"):
                    assert time.monotonic() < deadline and not running.done()
                    await asyncio.sleep(0.05)
            finally:
                await asyncio.to_thread(_away, db_url, False)
            request_pk = await asyncio.to_thread(open_one)
            deadline = time.monotonic() + 10
            while (made := await asyncio.to_thread(attempts, request_pk)) == 0:
                assert time.monotonic() < deadline, "the worker made no call after the outage"
                assert not running.done(), running
                await asyncio.sleep(0.05)
            return made
        finally:
            stop.set()
            await running
            await dispatcher.aclose()

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario()) >= 1  # JD refused it; the attempt is on record
    assert not [r for r in caplog.records if r.exc_info], "an outage is logged without tracebacks"
