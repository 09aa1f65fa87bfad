"""Every ledger query. PostgreSQL gets COPY for bulk writes; SQLite gets executemany."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import cache
from itertools import repeat
from operator import attrgetter
from typing import Any, cast

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    Select,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from tongcha.kit.db import UtcDateTime, add_row, find_by_code, is_postgres, wait_for_ledger_writers
from tongcha.ledger._native import copy_rows
from tongcha.ledger.models import (
    Carrier,
    LedgerEvent,
    LedgerNumber,
    LedgerRejection,
    LedgerRevision,
    ReassignmentBatch,
    ReassignmentCheck,
    Tenure,
)
from tongcha.ledger.parse import storable_event_id
from tongcha.ledger.replay import Event, EventType, NumberState, ledger_place


def carrier_by_code(session: Session, code: str) -> Carrier | None:
    return find_by_code(session, Carrier, code)


def carriers(session: Session) -> list[Carrier]:
    return list(session.scalars(select(Carrier).order_by(Carrier.code)))


# A revision is written by the Core, not through the session's unit of work: a carrier's
# post of one event is sixteen statements, and the unit of work's insert and update of the
# revision were a sixth of its time in the hub (docs/benchmarks.md §5).
_REVISIONS = cast(Table, LedgerRevision.__table__)


def new_revision(session: Session, carrier_id: int, source: str, now: datetime) -> int:
    """A new revision of the ledger, counting nothing yet; its id."""
    stmt = (
        insert(_REVISIONS)
        .values(carrier_id=carrier_id, source=source, created_at=now, accepted=0, duplicates=0, rejected=0)
        .returning(_REVISIONS.c.id)
    )
    return int(session.connection().execute(stmt).scalar_one())


def count_revision(session: Session, revision: int, accepted: int, duplicates: int, rejected: int) -> None:
    """What ``revision`` did, once it is written."""
    stmt = (
        update(_REVISIONS)
        .where(_REVISIONS.c.id == revision)
        .values(accepted=accepted, duplicates=duplicates, rejected=rejected)
    )
    session.connection().execute(stmt)


def _chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# A list of at most this many is probed item by item on PostgreSQL; a longer one (an
# import's chunk) is matched as a whole, through the index (``lookups_by_index``).
PROBE_AT_MOST = 1_000


@contextmanager
def lookups_by_index(session: Session) -> Iterator[Callable[[], None]]:
    """Within the block, what it gives plans the ledger writer's lookups as index scans,
    whatever the tables' statistics say, once called.

    A writer looks up only the events, tenures and summaries of the numbers and ids it
    is given. Without statistics (tables never analysed, as on a server with autovacuum
    off, or in a bulk load's first minute) the planner matched an import chunk's list of
    numbers against every event instead, once per chunk. A writer calls it for its first
    long chunk: a short list is probed item by item whatever the plan, so a batch through
    the API pays no round trip for it. At the block's end (or its transaction's) the
    setting is as it was."""
    was: list[str] = []

    def by_index() -> None:
        if not was and is_postgres(session):
            was.append(str(session.scalar(text("SELECT current_setting('enable_seqscan')"))))
            session.execute(text("SELECT set_config('enable_seqscan', 'off', true)"))

    yield by_index
    if was:
        session.execute(text("SELECT set_config('enable_seqscan', :was, true)"), {"was": was[0]})


# One index probe a listed event id: ``LIMIT`` keeps the probe a loop over the list, so
# that no estimate of the table can turn it into a pass over the carrier's events.
_PROBE_EVENT_IDS = text(
    "SELECT i.id FROM unnest(string_to_array(:ids, E'\\n')) AS i(id), "
    "LATERAL (SELECT 1 FROM ledger_events e WHERE e.carrier_id = :carrier AND e.event_id = i.id LIMIT 1) AS held"
)


def existing_event_ids(session: Session, carrier_id: int, event_ids: Sequence[str]) -> set[str]:
    """The ids among ``event_ids`` the carrier's ledger holds.

    On PostgreSQL the list goes as one text parameter that the server splits: psycopg's
    array dumper walks a list of tens of thousands in Python, several times slower than
    the join (no event id holds a newline: parse.storable_event_id). A short list, a
    batch through the API, is probed id by id: matched as a whole, it was planned as a
    pass over every event of the carrier whenever the table's statistics lagged behind
    it (after an import, while a feed grew it), 15-17 ms for 100 ids by 100,000 events,
    against 0.5 ms probed (docs/benchmarks.md §5)."""
    if not event_ids:
        return set()
    if is_postgres(session):
        ids = "\n".join(event_ids)
        if len(event_ids) <= PROBE_AT_MOST:
            return set(session.scalars(_PROBE_EVENT_IDS, {"ids": ids, "carrier": carrier_id}))
        listed = text("string_to_array(:ids, E'\\n')").bindparams(ids=ids)
        stmt = select(LedgerEvent.event_id).where(
            LedgerEvent.carrier_id == carrier_id, LedgerEvent.event_id == func.any(listed)
        )
        return set(session.scalars(stmt))
    stmt = select(LedgerEvent.event_id).where(
        LedgerEvent.carrier_id == carrier_id, LedgerEvent.event_id.in_(_sqlite_items(event_ids))
    )
    return set(session.scalars(stmt))


_EVENT_COLUMNS = (
    LedgerEvent.carrier_id,
    LedgerEvent.event_id,
    LedgerEvent.type,
    LedgerEvent.number,
    LedgerEvent.occurred_at,
    LedgerEvent.day,
    LedgerEvent.holder_digest,
    LedgerEvent.kyc_digest,
    LedgerEvent.tail_digest,
    LedgerEvent.to_carrier_id,
    LedgerEvent.revision,
    LedgerEvent.position,
)
# The events of each listed number, probed number by number (``OFFSET 0`` keeps the
# probe a loop over the list), as ``existing_event_ids`` probes a short list.
_PROBE_NUMBERS = text(
    f"SELECT {', '.join('e.' + c.key for c in _EVENT_COLUMNS)} "
    "FROM unnest(string_to_array(:nums, ',')::int8[]) AS n(number), "
    "LATERAL (SELECT * FROM ledger_events WHERE ledger_events.number = n.number OFFSET 0) AS e"
).columns(*_EVENT_COLUMNS)


def events_of(session: Session, numbers: Sequence[int]) -> dict[int, list[Event]]:
    """The accepted events of these numbers, for replay."""
    out: dict[int, list[Event]] = {}
    if not numbers:
        return out
    if is_postgres(session):
        unique = dict.fromkeys(numbers)  # a number probed twice would bring its events twice
        listed = ",".join(map(str, unique))
        if len(unique) <= PROBE_AT_MOST:
            rows: Iterable[Any] = session.execute(_PROBE_NUMBERS, {"nums": listed})
        else:
            nums = text("string_to_array(:nums, ',')::int8[]").bindparams(nums=listed)
            rows = session.execute(select(*_EVENT_COLUMNS).where(LedgerEvent.number == func.any(nums)))
        _add_events(out, rows)
        return out
    _add_events(out, session.execute(select(*_EVENT_COLUMNS).where(LedgerEvent.number.in_(_sqlite_items(numbers)))))
    return out


def _sqlite_items(values: Sequence[str] | Sequence[int]) -> Select[tuple[Any]]:
    """A list as one parameter on SQLite, a JSON array: the subquery of its items.

    An ``IN`` of a parameter per item had to go in parts of at most 900 (SQLite's limit
    on parameters), and SQLAlchemy built each part's statement anew, a parameter at a
    time: a tenth of a SQLite import. The plan is still a probe of the index per item."""
    items = func.json_each(orjson.dumps(list(values)).decode()).table_valued("value")
    return select(items.c.value)


def _add_events(out: dict[int, list[Event]], rows: Iterable[Any]) -> None:
    for row in rows:
        out.setdefault(row.number, []).append(
            Event(
                carrier_id=row.carrier_id,
                event_id=row.event_id,
                type=EventType(row.type),
                number=row.number,
                occurred_at=row.occurred_at,
                day=row.day,
                holder_digest=row.holder_digest,
                kyc_digest=row.kyc_digest,
                tail_digest=row.tail_digest,
                to_carrier_id=row.to_carrier_id,
                place=ledger_place(row.revision, row.position),
            )
        )


@cache
def _copy_types(table: Any, columns: tuple[str, ...]) -> list[str]:
    """PostgreSQL's names for the columns' types, which a binary COPY has to be told."""
    names = []
    for name in columns:
        kind = table.__table__.c[name].type
        kind = getattr(kind, "impl", kind)  # a TypeDecorator's stored type
        if isinstance(kind, BigInteger):
            names.append("int8")
        elif isinstance(kind, Integer):
            names.append("int4")
        elif isinstance(kind, Boolean):
            names.append("bool")
        elif isinstance(kind, DateTime):
            names.append("timestamptz" if kind.timezone else "timestamp")
        elif isinstance(kind, Date):
            names.append("date")
        elif isinstance(kind, String):
            names.append("text")
        else:  # pragma: no cover - a new column type needs a line above
            raise TypeError(f"no binary COPY type for {table.__tablename__}.{name}: {kind!r}")
    return names


def _copy(conn: Connection, table: Any, columns: tuple[str, ...], rows: Iterable[Sequence[Any]]) -> None:
    # Binary COPY: about a fifth less work on both sides than text for these rows.
    raw = conn.connection.driver_connection
    sql = f"COPY {table.__tablename__} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
        copy.set_types(_copy_types(table, columns))
        for row in rows:
            copy.write_row(row)


def _bulk(bind: Session | Connection, table: Any, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    conn = bind.connection() if isinstance(bind, Session) else bind
    if is_postgres(conn):
        _copy(conn, table, columns, rows)
        return
    _sqlite_insert(conn, table, columns, list(zip(*rows, strict=True)))


def _sqlite_insert(conn: Connection, table: Any, columns: tuple[str, ...], values: Sequence[Iterable[Any]]) -> None:
    """Insert rows given column by column (``values``: one iterable per column).

    The driver's executemany, with values stored as SQLAlchemy's SQLite types store
    them: Core's per-row insert processing costs more than the insert itself. Only the
    date and time columns need a conversion, made a column at a time: asking each value
    its type took a third of a SQLite import (docs/benchmarks.md §1, fifteenth pass)."""
    marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO {table.__tablename__} ({', '.join(columns)}) VALUES ({marks})"
    stored = [
        col if conv is None else map(conv, col) for conv, col in zip(_sqlite_kinds(table, columns), values, strict=True)
    ]
    conn.exec_driver_sql(sql, list(zip(*stored, strict=True)))


@cache
def _sqlite_kinds(table: Any, columns: tuple[str, ...]) -> tuple[Callable[[Any], Any] | None, ...]:
    """For each column, how SQLAlchemy's SQLite type stores a value of it, or None when
    the driver takes the value as it is."""
    kinds: list[Callable[[Any], Any] | None] = []
    for name in columns:
        kind = table.__table__.c[name].type
        timestamp = isinstance(kind, UtcDateTime | DateTime)
        kinds.append(_sqlite_timestamp if timestamp else _sqlite_day if isinstance(kind, Date) else None)
    return tuple(kinds)


def _sqlite_timestamp(value: datetime | None) -> str | None:
    # As SQLAlchemy's SQLite DATETIME writes it, in UTC (kit.db.UtcDateTime).
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _bulk_of(session: Session, table: Any, objects: Sequence[Any], sources: dict[str, Any]) -> None:
    """Write a row of ``table`` for each of ``objects``: each column's value is the
    object's attribute of that name where its source is a str, the object's item where
    it is a list as long as ``objects``, and the source itself otherwise.

    On PostgreSQL the whole binary COPY is made in C (``_native.copy_rows``): through
    psycopg's ``write_row`` one row at a time, the rows of an import took a sixth of its
    jobs' time (docs/benchmarks.md §1, thirteenth pass)."""
    if not objects:
        return
    conn = session.connection()
    columns = tuple(sources)
    if is_postgres(conn):
        types = _copy_types(table, columns)
        data = copy_rows(objects, [(kind, sources[name]) for kind, name in zip(types, columns, strict=True)])
        raw = conn.connection.driver_connection
        sql = f"COPY {table.__tablename__} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
            copy.write(data)
        return
    values = [
        map(attrgetter(source), objects)
        if isinstance(source, str)
        else source
        if isinstance(source, list)
        else repeat(source, len(objects))
        for source in sources.values()
    ]
    _sqlite_insert(conn, table, columns, values)


EVENT_INSERT_COLUMNS = (
    "carrier_id",
    "event_id",
    "type",
    "number",
    "occurred_at",
    "day",
    "holder_digest",
    "kyc_digest",
    "tail_digest",
    "to_carrier_id",
    "revision",
    "position",
)


def add_events(session: Session, events: Sequence[Event], revision: int, first_position: int) -> None:
    """Append accepted events to the ledger in the order given, as ``revision``'s events
    from ``first_position`` on (the events it has written already)."""
    sources: dict[str, Any] = {name: name for name in EVENT_INSERT_COLUMNS}
    sources["revision"] = revision
    sources["position"] = list(range(first_position, first_position + len(events)))
    _bulk_of(session, LedgerEvent, events, sources)


def add_rejections(session: Session, carrier_id: int, rejections: Sequence[Any], revision: int) -> None:
    # An event rejected for its id keeps the id in the answer to the carrier, but the
    # table keeps it only when it can be stored as sent.
    rows = [
        (
            carrier_id,
            r.event_id if r.event_id is not None and storable_event_id(r.event_id) else None,
            r.code,
            r.rule,
            r.reason[:300],
            revision,
        )
        for r in rejections
    ]
    _bulk(session, LedgerRejection, ("carrier_id", "event_id", "code", "rule", "reason", "revision"), rows)


# The listed numbers' tenures and summaries, gone in one statement (one round trip).
_DROP_STATES = text(
    "WITH gone AS (DELETE FROM tenures WHERE number = ANY(string_to_array(:nums, ',')::int8[])) "
    "DELETE FROM ledger_numbers WHERE number = ANY(string_to_array(:nums, ',')::int8[])"
)


def replace_states(session: Session, states: Sequence[NumberState], known: set[int], revision: int) -> None:
    """Write the tenures and summary of each number, replacing what ``known`` numbers had."""
    stale = sorted(known)
    if is_postgres(session):
        for part in _chunks(stale, 10_000):
            session.execute(_DROP_STATES, {"nums": ",".join(map(str, part))})
    elif stale:
        listed = _sqlite_items(stale)
        session.execute(delete(Tenure).where(Tenure.number.in_(listed)))
        session.execute(delete(LedgerNumber).where(LedgerNumber.number.in_(listed)))
    tenures = [t for state in states for t in state.tenures]
    numbers = [state.number for state in states for _ in state.tenures]
    _bulk_of(session, Tenure, tenures, {"number": numbers, **_TENURE_SOURCES, "revision": revision})
    # A number without tenures has no summary: nothing is known of it.
    summed = [state for state in states if state.tenures and state.carrier_id is not None]
    _bulk_of(session, LedgerNumber, summed, {**_SUMMARY_SOURCES, "revision": revision})


_TENURE_SOURCES = {
    name: name
    for name in (
        "seq",
        "holder_digest",
        "kyc_digest",
        "tail_digest",
        "carrier_id",
        "started_on",
        "ended_on",
        "end_reason",
    )
}
_SUMMARY_SOURCES = {
    name: name
    for name in (
        "number",
        "carrier_id",
        "first_known_on",
        "open_since",
        "last_change_on",
        "suspended",
        "quarantine_until",
    )
}


# ----- reading for the check index ------------------------------------------------


_LATEST_REVISION = select(func.coalesce(func.max(LedgerRevision.id), 0))


def latest_revision(session: Session) -> int:
    return int(session.scalar(_LATEST_REVISION) or 0)


def settled_revision(session: Session) -> int:
    """The latest revision, once every revision up to it has committed.

    Partition writers (a parallel import's jobs) may commit a revision numbered below one
    already committed; a reader that went on from the higher one would never see the
    lower. On PostgreSQL this waits, in a short transaction of its own, for the writers
    in flight; they wait behind it only while it reads the number.
    """
    if not is_postgres(session):
        return latest_revision(session)
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    with engine.connect() as conn, conn.begin():
        wait_for_ledger_writers(conn)
        return int(conn.scalar(_LATEST_REVISION) or 0)


def number_summaries_since(session: Session, revision: int) -> list[tuple[int, date, date | None, date]]:
    stmt = select(
        LedgerNumber.number, LedgerNumber.first_known_on, LedgerNumber.open_since, LedgerNumber.last_change_on
    ).where(LedgerNumber.revision > revision)
    return [(r[0], r[1], r[2], r[3]) for r in session.execute(stmt)]


# ----- tenures: who holds a number, and what a holder holds -------------------------


def current_tenure(session: Session, number: int) -> Tenure | None:
    """The number's open tenure (its holder now), or None when nobody holds it."""
    return session.scalars(
        select(Tenure).where(Tenure.number == number, Tenure.ended_on.is_(None)).order_by(Tenure.seq.desc()).limit(1)
    ).first()


def former_tenure(session: Session, holder: str, number: int) -> Tenure | None:
    """The holder's latest ended tenure of this number, if they held it before."""
    return session.scalars(
        select(Tenure)
        .where(Tenure.number == number, Tenure.holder_digest == holder, Tenure.ended_on.is_not(None))
        .order_by(Tenure.seq.desc())
        .limit(1)
    ).first()


def tenures_of(session: Session, holder_digest: str) -> list[Tenure]:
    """Every tenure under this holder, open or ended, oldest first."""
    return list(
        session.scalars(
            select(Tenure).where(Tenure.holder_digest == holder_digest).order_by(Tenure.started_on, Tenure.number)
        )
    )


def held_now(session: Session, holder: str) -> list[Tenure]:
    """The holder's open tenures, oldest first."""
    return list(
        session.scalars(
            select(Tenure)
            .where(Tenure.holder_digest == holder, Tenure.ended_on.is_(None))
            .order_by(Tenure.started_on, Tenure.number)
        )
    )


def latest_tenures(session: Session, number: int, count: int) -> list[Tenure]:
    """The number's last ``count`` tenures, latest first."""
    return list(session.scalars(select(Tenure).where(Tenure.number == number).order_by(Tenure.seq.desc()).limit(count)))


def tenure_at(session: Session, number: int, seq: int) -> Tenure | None:
    return session.get(Tenure, (number, seq))


def an_open_tenure(session: Session, seq: int) -> Tenure | None:
    """Some number's open ``seq``-th tenure (2: a number re-issued once), for examples."""
    return session.scalars(select(Tenure).where(Tenure.seq == seq, Tenure.ended_on.is_(None)).limit(1)).first()


def has_tenures(session: Session) -> bool:
    return session.scalars(select(Tenure.number).limit(1)).first() is not None


# ----- what the front page shows ---------------------------------------------------


def numbers_by_carrier(session: Session) -> list[tuple[str, str, int]]:
    """Each carrier's code, name and how many numbers it serves now, by code."""
    rows = session.execute(
        select(Carrier.code, Carrier.name, func.count(LedgerNumber.number))
        .join(LedgerNumber, LedgerNumber.carrier_id == Carrier.id, isouter=True)
        .group_by(Carrier.id)
        .order_by(Carrier.code)
    )
    return [(code, name, count) for code, name, count in rows]


def ledger_totals(session: Session) -> tuple[int, int, int]:
    """Numbers known, tenures held and checks answered."""
    return (
        session.scalar(select(func.count()).select_from(LedgerNumber)) or 0,
        session.scalar(select(func.count()).select_from(Tenure)) or 0,
        session.scalar(select(func.count()).select_from(ReassignmentCheck)) or 0,
    )


# ----- the check log ----------------------------------------------------------------


CHECK_COLUMNS = ("platform_id", "number_digest", "since", "result", "channel", "checked_at", "batch_id", "correlator")


def add_checks(bind: Session | Connection, rows: list[tuple[Any, ...]], *, in_transaction: bool = True) -> None:
    """Append rows to the check log, in the caller's transaction (``in_transaction``) or,
    on a PostgreSQL connection in autocommit that has ``synchronous_commit`` off, as one
    COPY that is its own transaction.

    On PostgreSQL the commit does not wait for the disk: every single check waits for
    its row, and a WAL flush held up by other writes to the disk (an import's pages
    going out) held a whole group of checks 60-200 ms (docs/benchmarks.md §3). The row
    is in the server once the commit returns; a crash of the database server itself can
    lose the last fraction of a second of log rows, never anything else (SQLite's
    ``synchronous=NORMAL`` makes the same trade on a power loss)."""
    if in_transaction and is_postgres(bind):
        bind.execute(text("SET LOCAL synchronous_commit = off"))
    _bulk(bind, ReassignmentCheck, CHECK_COLUMNS, rows)


def new_batch(session: Session, platform_id: int | None, now: datetime) -> ReassignmentBatch:
    return add_row(session, ReassignmentBatch(platform_id=platform_id, received_at=now, rows=0, invalid_rows=0))
