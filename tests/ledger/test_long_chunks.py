"""An import's long chunks: repeats found from the numbers' own events, or by the key.

On PostgreSQL a chunk of more than ``repository.PROBE_AT_MOST`` events is written
without looking its event ids up: a repeat of a number's own event is found among the
events replay reads for it, and an id the carrier gave another number breaks the
events' primary key, which undoes the chunk, then written again with its ids looked up.
Whichever way, the carrier gets the answer it would get with every id looked up, on
both stores, and nothing of the undone write is left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import ALICE, BOB, ev
from tests.ledger.test_chunked_ingest import ledger
from tongcha.kit.clock import FixedClock
from tongcha.kit.settings import Settings
from tongcha.ledger import importer
from tongcha.ledger import repository as repo
from tongcha.ledger.models import LedgerEvent, LedgerRevision, Tenure

pytestmark = pytest.mark.usefixtures("parties")

FILLER = repo.PROBE_AT_MOST + 200  # events enough to make a chunk long


def filler(first: int = 0) -> list[dict[str, Any]]:
    """Activations of numbers no other event of these tests names."""
    return [
        ev("activated", f"+86150{n:08d}", "2020-05-01", ALICE, event_id=f"fill-{n}")
        for n in range(first, first + FILLER)
    ]


def write_file(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def totals_of(settings: Settings, path: Path, clock: FixedClock, jobs: int = 1) -> tuple[int, int, int]:
    totals = importer.import_file(settings, path, "CMCC", clock=clock, jobs=jobs)
    return totals.accepted, totals.duplicates, totals.rejected


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_event_id_the_ledger_holds_for_another_number_is_a_duplicate_in_a_long_chunk(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock, tmp_path: Path, jobs: int
) -> None:
    first = write_file(tmp_path / "first.ndjson", [ev("activated", "+8613800138000", "2021-01-01", BOB, event_id="x1")])
    assert totals_of(settings, first, clock) == (1, 0, 0)
    with sessions() as session:
        before = session.execute(select(func.count()).select_from(LedgerRevision)).scalar_one()
    # The same id for another number, amid a long chunk, with a repeat of a filler event.
    events = [*filler(), ev("activated", "+8613900139000", "2021-02-01", ALICE, event_id="x1")]
    events.insert(300, events[5])
    second = write_file(tmp_path / "second.ndjson", events)
    assert totals_of(settings, second, clock, jobs) == (FILLER, 2, 0)
    with sessions() as session:
        held = session.execute(select(LedgerEvent.number).where(LedgerEvent.event_id == "x1")).all()
        assert held == [(13800138000,)]
        assert session.scalar(select(func.count()).select_from(Tenure).where(Tenure.number == 13900139000)) == 0
        assert session.scalar(select(func.count()).select_from(LedgerEvent)) == FILLER + 1
        # One revision a job, whether or not its chunk was written twice.
        assert session.scalar(select(func.count()).select_from(LedgerRevision)) == before + importer.import_jobs(
            settings, jobs
        )


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_long_file_imported_again_is_all_duplicates_and_leaves_the_ledger_as_it_was(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock, tmp_path: Path, jobs: int
) -> None:
    events = [
        *filler(),
        ev("activated", "+8613800138000", "2021-01-01", BOB, event_id="a1"),
        ev("cancelled", "+8613800138000", "2021-06-01", event_id="a2"),
        ev("activated", "+8613800138000", "2021-01-02", ALICE, event_id="a3"),  # refused: in quarantine
    ]
    path = write_file(tmp_path / "events.ndjson", events)
    assert totals_of(settings, path, clock, jobs) == (FILLER + 2, 0, 1)
    with sessions() as session:
        once = ledger(session)
    assert totals_of(settings, path, clock, jobs) == (0, FILLER + 2, 1)
    with sessions() as session:
        again = ledger(session)
    assert again["events"] == once["events"] and again["tenures"] == once["tenures"]
    assert again["numbers"] == once["numbers"]


def test_a_long_chunk_written_twice_keeps_its_repeats_refusals_and_order_as_once(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    # Held before: "held-own" for its own number, "held-other" for another number.
    before = [
        ev("activated", "+8613800138000", "2021-01-01", BOB, event_id="held-own"),
        ev("activated", "+8613800138001", "2021-01-01", BOB, event_id="held-other"),
    ]
    assert totals_of(settings, write_file(tmp_path / "before.ndjson", before), clock) == (2, 0, 0)
    events = [
        ev("activated", "+8613800138000", "2021-01-01", BOB, event_id="held-own"),  # a repeat
        ev("transferred", "+8613800138000", "2022-01-01", ALICE, event_id="new-own"),
        *filler(),
        ev("cancelled", "+8613800138002", "2022-01-01", event_id="held-other"),  # held by another
        ev("activated", "+8613800138000", "2022-02-01", BOB, event_id="refused"),  # an open tenure
    ]
    totals = importer.import_file(settings, write_file(tmp_path / "e.ndjson", events), "CMCC", clock=clock, jobs=1)
    assert (totals.accepted, totals.duplicates, totals.rejected) == (FILLER + 1, 2, 1)
    assert list(totals.by_rule) == [next(iter(totals.by_rule))] and totals.rejected == 1
    with sessions() as session:
        positions = session.execute(
            select(LedgerEvent.event_id, LedgerEvent.position)
            .where(LedgerEvent.revision == select(func.max(LedgerEvent.revision)).scalar_subquery())
            .order_by(LedgerEvent.position)
        ).all()
    # The import's events in the order it accepted them, numbered from 0 without a gap.
    assert [p for _, p in positions] == list(range(FILLER + 1))
    assert positions[0][0] == "new-own"
