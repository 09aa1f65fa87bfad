"""The hub's database goes away and comes back. Meanwhile every request that needs it is a
503 in the one error shape, with ``Retry-After``, logged in one line; nothing is
half-written; and once the database is back the hub answers again without a restart.

PostgreSQL only: it is the store that runs as a server of its own and can go away under
a running hub. The outage is real: the test database stops taking connections and the
hub's open ones are ended by the server.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import PG_ADMIN, bearer
from tests.factories import BOB, ev
from tongcha.kit.migrate import upgrade

N = "+8613800000001"


@pytest.fixture
def db_url() -> Iterator[str]:
    """A database of this test's own, so cutting it off touches nothing else."""
    name = f"tongcha_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _away(url: str, away: bool) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if away else "true"}')
        if away:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


def _is_unavailable(r: object) -> None:
    assert getattr(r, "status_code", None) == 503, getattr(r, "text", r)
    body = r.json()  # type: ignore[attr-defined]
    assert body["error"]["code"] == "UNAVAILABLE" and body["error"]["details"] == []
    assert r.headers["retry-after"] == "5"  # type: ignore[attr-defined]
    assert len(r.headers.get_list("x-correlator")) == 1  # type: ignore[attr-defined]


def test_while_the_database_is_away_the_hub_answers_503_and_then_comes_back(
    client: TestClient, parties: dict[str, str], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    platform, carrier = bearer(parties["JD"]), bearer(parties["CMCC"])
    check = f"/platform/v1/reassignments/{N}?since=2020-01-01"
    events = [ev("activated", N, "2019-05-01", BOB)]
    assert client.get(check, headers=platform).json()["result"] == "no_data"

    _away(db_url, True)
    try:
        with caplog.at_level(logging.WARNING):
            _is_unavailable(client.get(check, headers=platform))
            _is_unavailable(client.post("/carrier/v1/events", json=events, headers=carrier))
            camara = {"phoneNumber": N, "specifiedDate": "2020-01-01"}
            _is_unavailable(client.post("/number-recycling/v0.2/check", json=camara, headers=platform))
            _is_unavailable(client.post("/v1/verifications", json={"phone": N, **BOB}))
        assert not [r for r in caplog.records if r.exc_info], "an outage is logged without tracebacks"
        assert any("database unavailable" in r.getMessage() for r in caplog.records)
    finally:
        _away(db_url, False)

    # Back: nothing of the refused batch was written, so sending it again takes it all.
    r = client.post("/carrier/v1/events", json=events, headers=carrier)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    assert client.get(check, headers=platform).json()["result"] == "no"
