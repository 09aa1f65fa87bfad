"""A carrier's small batches look their events up by index, however the ledger has grown.

A batch's event ids and numbers are looked up in the ledger. Matched as one list, the
lookup was planned, whenever the table's statistics lagged behind it (after an import,
while a feed grew it) or a connection kept a plan made while the table was small, as a
pass over every event of the carrier: each small batch then cost as much as the ledger
is large. The plans the server runs are read here as it reports them (``auto_explain``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import ALICE, ev
from tongcha.kit.clock import FixedClock
from tongcha.kit.settings import Settings
from tongcha.ledger import importer, service
from tongcha.ledger import repository as repo

pytestmark = [
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
    pytest.mark.usefixtures("parties"),
]


@pytest.fixture
def plans(engine: Engine) -> Iterator[list[str]]:
    """The plan of every statement the engine's connections run, as the server reports it."""
    seen: list[str] = []

    def explain(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.add_notice_handler(lambda diag: seen.append(diag.message_primary or ""))
        with dbapi_conn.cursor() as cur:
            cur.execute("LOAD 'auto_explain'")
            cur.execute("SET auto_explain.log_min_duration = 0")
            cur.execute("SET auto_explain.log_level = notice")
        dbapi_conn.commit()

    event.listen(engine, "connect", explain)
    engine.dispose()  # connections made from now on report their plans
    yield seen
    event.remove(engine, "connect", explain)
    engine.dispose()


def send(conn: Connection, settings: Settings, clock: FixedClock, events: list[dict[str, Any]]) -> None:
    """What the API does with a batch, on this one connection."""
    with Session(bind=conn) as session, session.begin():
        carrier = repo.carrier_by_code(session, "CMCC")
        assert carrier is not None
        service.ingest(session, carrier, events, clock=clock, settings=settings, source="api")


def test_a_small_batch_reads_the_event_id_index_after_the_ledger_grew_under_a_kept_connection(
    engine: Engine, plans: list[str], settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    with engine.connect() as conn:
        for b in range(20):  # the feed's first batches, on a ledger nearly empty
            batch = [ev("activated", f"+86138{b:03d}{i:05d}", "2020-01-01", ALICE) for i in range(100)]
            send(conn, settings, clock, batch)
        # The ledger grows, from a bulk import, while the connection is kept.
        path = tmp_path / "bulk.ndjson"
        path.write_bytes(
            b"".join(
                orjson.dumps(ev("activated", f"+86139{i:08d}", "2020-01-01", ALICE)) + b"\n" for i in range(20_000)
            )
        )
        importer.import_file(settings, path, "CMCC", clock=clock, jobs=1)
        plans.clear()
        send(conn, settings, clock, [ev("cancelled", "+8613800000001", "2021-01-01")])
        conn.execute(text("SELECT 1"))  # the transaction's notices have all arrived
    lookups = [p for p in plans if "Query Text: SELECT" in p and "FROM ledger_events" in p.replace("\n", " ")]
    assert len(lookups) == 2, plans  # the event ids, and the numbers' events
    for plan in lookups:  # each list is looked up in an index, not matched against every row
        assert "Index Cond" in plan and "Filter" not in plan and "Seq Scan" not in plan, plan
    # The number's tenures and summary are replaced: found by index too, in one statement.
    drops = [p for p in plans if "DELETE FROM tenures" in p]
    assert len(drops) == 1, plans
    assert drops[0].count("Index Cond") == 2 and "Seq Scan" not in drops[0], drops[0]


def test_a_long_chunk_looks_its_numbers_events_up_in_the_index_whatever_the_statistics_say(
    engine: Engine, plans: list[str], settings: Settings, clock: FixedClock
) -> None:
    # The ledger's tables have never been analysed (as on a server whose autovacuum is
    # off, or in a bulk load's first minute): matched as one list, an import chunk's
    # numbers were planned as a pass over every event, once per chunk.
    held = [ev("activated", f"+86138{i:08d}", "2020-01-01", ALICE) for i in range(3_000)]
    more = [ev("cancelled", f"+86138{i:08d}", "2021-01-01") for i in range(0, 3_000, 2)]
    assert len(more) > repo.PROBE_AT_MOST
    with engine.connect() as conn:
        send(conn, settings, clock, held)
        plans.clear()
        send(conn, settings, clock, more)
        conn.execute(text("SELECT 1"))  # the transaction's notices have all arrived
    lookups = [p for p in plans if "Query Text: SELECT" in p and "FROM ledger_events" in p.replace("\n", " ")]
    assert lookups, plans
    for plan in lookups:
        assert "Seq Scan" not in plan and "ix_ledger_events_number" in plan, plan
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM ledger_numbers WHERE open_since IS NULL")) == 1_500
    # A short batch after it leaves the planner's setting alone: no statement touches it.
    plans.clear()
    with engine.connect() as conn:
        send(conn, settings, clock, [ev("cancelled", "+8613800000001", "2021-01-01")])
        conn.execute(text("SELECT 1"))
    assert plans and not [p for p in plans if "enable_seqscan" in p], plans


def test_a_number_listed_twice_brings_its_events_once(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock
) -> None:
    with sessions() as session, session.begin():
        carrier = repo.carrier_by_code(session, "CMCC")
        assert carrier is not None
        number = "+8613800138000"
        events = [ev("activated", number, "2020-01-01", ALICE), ev("cancelled", number, "2021-01-01")]
        service.ingest(session, carrier, events, clock=clock, settings=settings, source="api")
    with sessions() as session:
        found = repo.events_of(session, [13800138000, 13800138000])
    assert sorted(e.type.value for e in found[13800138000]) == ["activated", "cancelled"]


def test_the_planner_setting_is_as_it_was_after_the_writes(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, session.begin():
        with repo.lookups_by_index(session) as by_index:
            assert session.scalar(text("SHOW enable_seqscan")) == "on"  # not until asked
            by_index()
            by_index()
            assert session.scalar(text("SHOW enable_seqscan")) == "off"
        # The rest of the transaction (the API's own statements, say) is planned as before.
        assert session.scalar(text("SHOW enable_seqscan")) == "on"
