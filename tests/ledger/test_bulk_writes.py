"""The ledger's bulk writes and lookups on both stores, at the sizes an import gives them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import ALICE, BOB, ev
from tongcha.kit.clock import FixedClock
from tongcha.kit.db import make_engine
from tongcha.kit.settings import Settings
from tongcha.ledger import importer, repository
from tongcha.ledger.models import LedgerEvent, LedgerNumber, ReassignmentCheck, Tenure
from tongcha.ledger.replay import Event, EventType, ledger_place

NUMBERS = 1_500  # more than SQLite takes parameters in one statement (999), and a long chunk on PostgreSQL


def _write(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


@pytest.mark.usefixtures("parties")
def test_a_second_import_of_many_numbers_finds_what_each_holds_and_counts_its_repeats(
    settings: Settings, sessions: sessionmaker[Session], clock: FixedClock, tmp_path: Path
) -> None:
    numbers = [f"+86138{i:08d}" for i in range(NUMBERS)]
    first = [ev("activated", n, "2021-01-05", ALICE, event_id=f"act-{i}") for i, n in enumerate(numbers)]
    totals = importer.import_file(settings, _write(tmp_path / "first.ndjson", first), "CMCC", clock=clock, jobs=1)
    assert (totals.accepted, totals.duplicates, totals.rejected) == (NUMBERS, 0, 0)

    # The carrier sends its whole history again, with each number's cancellation, and a
    # re-issue of every other number to a new holder on the 90th day after it.
    second = [
        *first,
        *(ev("cancelled", n, "2022-03-01", event_id=f"can-{i}") for i, n in enumerate(numbers)),
        *(ev("activated", n, "2022-05-30", BOB, event_id=f"new-{i}") for i, n in enumerate(numbers) if i % 2 == 0),
    ]
    again = importer.import_file(settings, _write(tmp_path / "second.ndjson", second), "CMCC", clock=clock, jobs=1)
    assert (again.accepted, again.duplicates, again.rejected) == (NUMBERS + NUMBERS // 2, NUMBERS, 0), again.by_rule

    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEvent)) == 2 * NUMBERS + NUMBERS // 2
        tenures = session.execute(select(Tenure.number, Tenure.seq, Tenure.started_on, Tenure.ended_on)).all()
        summaries = dict(session.execute(select(LedgerNumber.number, LedgerNumber.open_since)).all())
    # Each number's tenures were rebuilt, not added to: Alice's, ended, and Bob's on every other.
    assert len(tenures) == NUMBERS + NUMBERS // 2
    first_seq = min(t.seq for t in tenures)
    ended = {t.number: t.ended_on for t in tenures if t.seq == first_seq}
    assert len(ended) == NUMBERS and set(ended.values()) == {date(2022, 3, 1)}
    assert {t.started_on for t in tenures if t.seq == first_seq + 1} == {date(2022, 5, 30)}
    reissued = {int(n[3:]) for i, n in enumerate(numbers) if i % 2 == 0}
    assert {n for n, since in summaries.items() if since == date(2022, 5, 30)} == reissued
    assert {n for n, since in summaries.items() if since is None} == {int(n[3:]) for n in numbers} - reissued


def test_a_list_of_many_ids_and_numbers_is_looked_up_whole(sessions: sessionmaker[Session]) -> None:
    at = datetime(2021, 1, 5, 2, 0, tzinfo=UTC)
    events = [
        Event(
            1, f"id-{i}", EventType.activated, 13800000000 + i, at, at.date(), "h", "k", "t", None, ledger_place(1, i)
        )
        for i in range(NUMBERS)
    ]
    with sessions() as session, session.begin():
        repository.add_events(session, events[::2], 1, 0)
        asked = [e.event_id for e in events] + ["id-none", "id-0"]
        held = repository.existing_event_ids(session, 1, asked)
        assert held == {e.event_id for e in events[::2]}
        assert repository.existing_event_ids(session, 2, asked) == set()
        found = repository.events_of(session, [e.number for e in events[:1000]])
    assert sorted(found) == [e.number for e in events[:1000:2]]
    assert [e.event_id for e in found[events[998].number]] == ["id-998"]


def test_bulk_rows_are_stored_on_sqlite_as_sqlalchemy_stores_them(sqlite_url: str) -> None:
    """Timestamps and days written by the bulk path read and compare as those written
    one row at a time through SQLAlchemy do, whatever offset the timestamp came with
    (PostgreSQL stores them typed, not as text)."""
    engine = make_engine(sqlite_url)
    beijing = timezone(timedelta(hours=8))
    checked = [
        datetime(2026, 11, 23, 12, 30, 5, 120, tzinfo=beijing),
        datetime(2026, 11, 23, 4, 30, 5, tzinfo=UTC),
        datetime(2026, 11, 22, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
    ]
    columns = ("number_digest", "since", "result", "channel", "checked_at")
    with Session(engine) as session, session.begin():
        session.execute(text("DELETE FROM reassignment_checks"))
        for i, at in enumerate(checked):
            session.add(
                ReassignmentCheck(
                    number_digest=f"one-{i}", since=date(2021, 1, i + 1), result="no", channel="api", checked_at=at
                )
            )
        session.flush()
        rows = [(None, f"bulk-{i}", date(2021, 1, i + 1), "no", "api", at, None, None) for i, at in enumerate(checked)]
        repository.add_checks(session, rows)
        stored = session.execute(
            text(f"SELECT {', '.join(columns)} FROM reassignment_checks ORDER BY number_digest")
        ).all()
    bulk = {row[0].removeprefix("bulk-"): row[1:] for row in stored if row[0].startswith("bulk-")}
    one = {row[0].removeprefix("one-"): row[1:] for row in stored if row[0].startswith("one-")}
    engine.dispose()
    assert bulk == one and len(bulk) == 3
    assert bulk["0"][3] == "2026-11-23 04:30:05.000120"
