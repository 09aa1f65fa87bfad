"""Database plumbing: engines for SQLite and PostgreSQL, the declarative base, sessions."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_Row = TypeVar("_Row")


def find_by_code(session: Session, model: type[_Row], code: str) -> _Row | None:
    """The carrier or platform with this code, or with one that reads the same in
    capitals (an operator typing ``meituan`` means ``MEITUAN``; registration refuses two
    codes that read the same, so there is at most one)."""
    column: Any = model.code  # type: ignore[attr-defined]
    found = session.scalars(select(model).where(column == code)).first()
    if found is None:
        found = session.scalars(select(model).where(func.upper(column) == code.upper())).first()
    return found


def add_row(session: Session, row: _Row) -> _Row:
    """Insert one new row now (flush, no commit), so its generated id is known."""
    session.add(row)
    session.flush()
    return row


# SQLite only auto-numbers an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware timestamp on every database: SQLite keeps no zone, so it is stored as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalise_url(url: str) -> str:
    """Accept the plain ``postgresql://`` form and use the psycopg 3 driver for it."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not pysqlite, decide when a transaction begins (see _sqlite_on_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    # 64 MiB of pages per connection where SQLite keeps 2 MiB: an import's inserts land
    # all over the ledger's indexes, and with the smaller cache their pages were read
    # from the file again and again (docs/benchmarks.md §1, fifteenth pass). The cache
    # grows only as pages are used.
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def _sqlite_on_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes SQLite's write lock up front, so two writers queue instead of
    # failing with "database is locked" half-way through a unit of work.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


def is_postgres(bind: Session | Engine | Connection) -> bool:
    target = bind.get_bind() if isinstance(bind, Session) else bind
    return target.dialect.name == "postgresql"


# SQLite serialises writers itself; this lock also keeps two threads of one process
# from interleaving ledger replays on the same number.
_process_ledger_lock = threading.Lock()
LEDGER_LOCK_KEY = 0x7463_6C65  # "tcle"
# The ledger's numbers fall into this many partitions (number % LEDGER_PARTITIONS), each
# with a lock of its own, so that writers of disjoint partitions (the jobs of a parallel
# import) can run side by side. Locks on two 32-bit keys never meet the 64-bit key above.
LEDGER_PARTITIONS = 32
_PARTITION_LOCK_CLASS = 0x7463_6C70  # "tclp"
# The whole ledger to one holder: a whole-ledger writer, or a reader waiting out the writers.
_HOLD_LEDGER = text("SELECT pg_advisory_xact_lock(:k)")


def ledger_partition(number: int) -> int:
    return number % LEDGER_PARTITIONS


@contextmanager
def ledger_write_lock(session: Session, partitions: Collection[int] | None = None) -> Iterator[None]:
    """Keep ledger writers of the same numbers apart, across processes and threads.

    With ``partitions`` None the writer has the whole ledger to itself. Otherwise it may
    write only numbers of those partitions, and runs beside writers of other partitions.
    Their revisions may then commit out of the order they are numbered in, so a reader
    that follows the ledger by revision asks ``settled_revision`` how far it may read.
    On PostgreSQL, whole-ledger writers hold the ledger key exclusively, partition
    writers share it and hold their partitions' keys, taken in ascending order so two
    of them never wait on each other in a circle.
    """
    with _process_ledger_lock:
        if is_postgres(session):
            if partitions is None:
                session.execute(_HOLD_LEDGER, {"k": LEDGER_LOCK_KEY})
            else:
                session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": LEDGER_LOCK_KEY})
                # unnest yields the sorted array in order, so the locks are taken in it.
                session.execute(
                    text("SELECT pg_advisory_xact_lock(:c, p) FROM unnest(CAST(:ps AS int4[])) AS p"),
                    {"c": _PARTITION_LOCK_CLASS, "ps": sorted(set(partitions))},
                )
        yield


def wait_for_ledger_writers(conn: Connection) -> None:
    """Hold the ledger until ``conn``'s transaction ends, once no writer is in flight.

    For readers that follow the ledger by revision (PostgreSQL only): partition writers
    may commit revisions out of their numbered order, and with every writer out of the
    way, every revision up to the latest has committed."""
    conn.execute(_HOLD_LEDGER, {"k": LEDGER_LOCK_KEY})


# What the drivers raise themselves: a COPY on psycopg's own connection is not wrapped
# in SQLAlchemy's DBAPIError.
DRIVER_ERRORS: tuple[type[Exception], ...] = (psycopg.Error, sqlite3.Error)


def database_trouble(exc: BaseException) -> str:
    """What went wrong with the database, in one line with no SQL and no parameters."""
    orig = getattr(exc, "orig", None)
    if not isinstance(orig, BaseException) and isinstance(exc, DRIVER_ERRORS):
        orig = exc
    if isinstance(orig, BaseException):
        first = str(orig).strip().splitlines()
        return f"{type(orig).__name__}: {first[0]}" if first else type(orig).__name__
    return type(exc).__name__


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error, raised by the driver or wrapped by SQLAlchemy."""
    found = getattr(getattr(exc, "orig", None) or exc, "sqlstate", None)
    return found if isinstance(found, str) else None


def broken_unique(exc: BaseException) -> str | None:
    """The constraint a PostgreSQL unique violation names (raised by the driver, as a
    COPY's is, or wrapped by SQLAlchemy); None for any other error."""
    if sqlstate(exc) != "23505":
        return None
    found = getattr(getattr(getattr(exc, "orig", None) or exc, "diag", None), "constraint_name", None)
    return found if isinstance(found, str) else None


# What a database that went away (or cannot keep up) raises: the loops that must outlive
# it catch these, the web app answers them 503. A COPY runs on psycopg's own connection,
# whose errors SQLAlchemy does not wrap.
UNAVAILABLE = (OperationalError, PoolTimeout, psycopg.OperationalError)


class Outage:
    """Back-off for a loop that must outlive its database going away: after each failure
    ``wait`` logs one line and says how long to sleep (``first``, doubling up to ``cap``
    seconds); ``over`` after a success starts again from ``first``."""

    def __init__(self, what: str, *, first: float = 1.0, cap: float = 30.0) -> None:
        self.what = what
        self.first = first
        self.cap = cap
        self.delay = 0.0

    def wait(self, exc: BaseException) -> float:
        self.delay = min(self.cap, self.delay * 2 or self.first)
        _log.warning(
            "%s: database unavailable, trying again in %.1f s: %s", self.what, self.delay, database_trouble(exc)
        )
        return self.delay

    def over(self) -> None:
        if self.delay:
            _log.warning("%s: database back", self.what)
        self.delay = 0.0


_log = logging.getLogger("tongcha.db")
