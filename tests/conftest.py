"""Every test that touches a database runs twice: on SQLite and on the real PostgreSQL.

PostgreSQL must be reachable (TONGCHA_TEST_PG, default 127.0.0.1:5432): a missing
server fails the run, it is never skipped. Each test gets a freshly migrated schema
state: tables are emptied after every test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit import credentials
from tongcha.kit.clock import FixedClock
from tongcha.kit.db import make_engine, make_sessionmaker
from tongcha.kit.migrate import upgrade
from tongcha.kit.models import Base
from tongcha.kit.settings import Settings
from tongcha.parties import add_carrier, add_platform
from tongcha.web.app import create_app

PG_ADMIN = os.environ.get("TONGCHA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # noon in Beijing


@contextlib.contextmanager
def fresh_pg_database(prefix: str = "tongcha_test", *, migrated: bool = True) -> Iterator[str]:
    """A PostgreSQL database of its own (at the latest schema when ``migrated``), dropped
    afterwards even if it was left refusing connections."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        if migrated:
            upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "tongcha.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    with eng.begin() as conn:
        names = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if eng.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))
        else:
            for name in names:
                conn.execute(text(f"DELETE FROM {name}"))
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(env="dev", database_url=db_url, index_refresh_seconds=0.0)


@pytest.fixture
def parties(sessions: sessionmaker[Session], clock: FixedClock) -> dict[str, str]:
    """Three carriers and two platforms, with their bearer secrets."""
    with sessions() as session, session.begin():
        return {
            "CMCC": add_carrier(session, "CMCC", "China Mobile", 90, clock.now()),
            "CUCC": add_carrier(session, "CUCC", "China Unicom", 90, clock.now()),
            "CTCC": add_carrier(session, "CTCC", "China Telecom", 30, clock.now()),
            "MEITUAN": add_platform(session, "MEITUAN", "Meituan", clock.now()),
            "JD": add_platform(session, "JD", "JD", clock.now()),
        }


@pytest.fixture
def operator(sessions: sessionmaker[Session], clock: FixedClock) -> dict[str, str]:
    """Headers carrying an operator credential."""
    with sessions() as session, session.begin():
        secret = credentials.issue(session, credentials.PartyKind.operator, 0, clock.now())
    return bearer(secret)


@pytest.fixture
def client(settings: Settings, clock: FixedClock, engine: Engine, parties: dict[str, str]) -> Iterator[TestClient]:
    app = create_app(settings, clock, engine)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, for as long as the block runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "hub did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_hub(settings: Settings, clock: FixedClock, engine: Engine, parties: dict[str, str]) -> Iterator[str]:
    with serving(create_app(settings, clock, engine)) as url:
        yield url


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# The codes API.md gives a 4xx answer (its INTERNAL and UNAVAILABLE are 5xx).
API_ERROR_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "OUT_OF_RANGE",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "NOT_FOUND",
        "CONFLICT",
        "TOO_MANY_REQUESTS",
    }
)


def assert_error_shape(status: int, body: bytes) -> str:
    """A 4xx answer in API.md's error shape; its code."""
    assert 400 <= status < 500, (status, body[:300])
    error = orjson.loads(body)["error"]
    assert error["code"] in API_ERROR_CODES and isinstance(error["message"], str) and error["message"], error
    return str(error["code"])


@contextlib.contextmanager
def refusing_rows(engine: Engine, table: str = "reassignment_checks") -> Iterator[None]:
    """The database refuses every new row of ``table`` (the check log) while the block runs."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_rows() RETURNS trigger LANGUAGE plpgsql AS "
                    f"$$ BEGIN RAISE EXCEPTION 'the {table} table refuses rows'; END $$"
                )
            )
            conn.execute(
                text(f"CREATE TRIGGER refuse_rows BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_rows()")
            )
        else:
            conn.execute(
                text(
                    f"CREATE TRIGGER refuse_rows BEFORE INSERT ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the {table} table refuses rows'); END"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"DROP TRIGGER refuse_rows ON {table}"))
                conn.execute(text("DROP FUNCTION refuse_rows()"))
            else:
                conn.execute(text("DROP TRIGGER refuse_rows"))


def until(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    """Wait until ``condition`` holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.005)


def waiting_for_the_ledger(engine: Engine) -> int:
    """How many connections to ``engine``'s database wait for an advisory lock (on
    PostgreSQL, writers wait so for the ledger)."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT COUNT(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                    "WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted"
                )
            ).scalar_one()
        )
