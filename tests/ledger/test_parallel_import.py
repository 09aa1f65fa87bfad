"""A parallel import: jobs of their own for shares of the numbers, and the locks around them.

On PostgreSQL an import runs one job per share of the ledger's partitions, each in a
process of its own. It must leave exactly the ledger one job leaves, however the file
writes its numbers, and readers that follow the ledger by revision must not skip a
revision that one job commits after another job's later one.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import threading
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import until, waiting_for_the_ledger
from tests.factories import ALICE, BOB, ev
from tests.ledger.test_chunked_ingest import forget_the_ledger, ledger, shuffled_events
from tongcha.kit.clock import FixedClock
from tongcha.kit.db import LEDGER_PARTITIONS, ledger_partition, ledger_write_lock, wait_for_ledger_writers
from tongcha.kit.settings import Settings
from tongcha.ledger import importer, service
from tongcha.ledger import repository as repo
from tongcha.ledger.index import LedgerIndex
from tongcha.ledger.models import LedgerEvent
from tongcha.ledger.parse import CSV_COLUMNS, Rejection
from tongcha.ledger.service import ParsedChunk
from tongcha.sim.ledger import SynthConfig, generate

pytestmark = [
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
    pytest.mark.usefixtures("parties"),
]

EVEN, ODD = "+8613800138000", "+8613800138001"  # of jobs 0 and 1 of two


def hostile_lines() -> bytes:
    """Lines whose job cannot be told from their text, or would be told wrongly by it."""
    as_json_number = ev("resumed", "+8613900139000", "2021-03-01", event_id="spaced-3")
    as_json_number["number"] = 13900139000
    lines = [
        b"this line is not JSON",
        b'{"event_id":"cut-short","type":"activated","number":"+8613900139000","occurred_at":"2021-0',
        orjson.dumps(ev("activated", "+8615400000000", "2021-01-01", ALICE, event_id="bad-prefix")),
        # One number written four ways: spaced, full-width, as a JSON number, plainly.
        orjson.dumps(ev("activated", "+86 139 0013 9000", "2021-01-01", ALICE, event_id="spaced-1")),
        orjson.dumps(ev("suspended", "+86１３９００１３９０００", "2021-02-01", event_id="spaced-2")),
        orjson.dumps(as_json_number),
        orjson.dumps(ev("activated", "+8613900139000", "2021-01-01", ALICE, event_id="spaced-1")),  # a repeat
        # The number key escaped, with a "number" nested in the holder naming another job's
        # number; then the events after it, the first of them earlier in time.
        b'{"event_id":"nested-1","type":"activated","\\u006eumber":"' + EVEN.encode() + b'",'
        b'"occurred_at":"2021-01-01T10:00:00+08:00","holder":{"id_number":"' + BOB["id_number"].encode() + b'",'
        b'"name":"' + BOB["name"].encode() + b'","number":"' + ODD.encode() + b'"}}',
        orjson.dumps(ev("cancelled", EVEN, "2022-01-01", event_id="nested-2")),
        orjson.dumps(ev("activated", EVEN, "2021-06-01", ALICE, event_id="nested-3")),  # refused: held by Bob
        # No number of its own, only one nested in the holder.
        orjson.dumps({**ev("activated", ODD, "2021-01-01", event_id="no-number"), "number": None})
        .replace(b'"number":null,', b"")
        .replace(b"}", b',"holder":{"number":"' + ODD.encode() + b'"}}'),
        # A name escaped the way some JSON writers write anything not ASCII.
        orjson.dumps(ev("activated", ODD, "2021-01-01", BOB, event_id="escaped-name")).replace(
            BOB["name"].encode(), BOB["name"].encode("ascii", "backslashreplace").replace(b"\\u", b"\\u")
        ),
    ]
    return b"\n".join(lines) + b"\n"


def numbers_of_the_job_of(number: str, count: int, jobs: int = 2) -> list[int]:
    """``count`` numbers (with their country code, 86) that go to the job of ``number``."""
    job = ledger_partition(int(number[3:])) % jobs
    found = (n for n in range(15000000000, 15100000000) if ledger_partition(n) % jobs == job)
    return [8600000000000 + n for n in islice(found, count)]


def write_file(path: Path, events: list[dict[str, Any]], tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events) + tail)
    return path


def import_with(jobs: int, settings: Settings, path: Path, clock: FixedClock, rejects: Path) -> Counter[str]:
    totals = importer.import_file(settings, path, "CMCC", clock=clock, jobs=jobs, rejects=rejects)
    assert totals.accepted + totals.duplicates + totals.rejected > 0
    return Counter(
        {"accepted": totals.accepted, "duplicates": totals.duplicates, "rejected": totals.rejected, **totals.by_rule}
    )


def imported_alike_by_one_and_three_jobs(
    sessions: sessionmaker[Session], settings: Settings, path: Path, clock: FixedClock, tmp_path: Path
) -> tuple[Counter[str], dict[str, Any]]:
    """Import ``path`` with one job, then again into an empty ledger with three, and hold
    the two alike: the same totals and refusals, the same ledger. Returns the totals and
    that ledger; the refusals are in ``one.ndjson`` and ``three.ndjson`` under ``tmp_path``."""
    one = import_with(1, settings, path, clock, tmp_path / "one.ndjson")
    with sessions() as session:
        by_one_job = ledger(session)
    forget_the_ledger(sessions)
    three = import_with(3, settings, path, clock, tmp_path / "three.ndjson")
    with sessions() as session:
        by_three_jobs = ledger(session)
    assert three == one
    assert by_three_jobs == by_one_job
    assert one["accepted"] > 0
    return one, by_three_jobs


def test_a_parallel_import_leaves_the_ledger_one_job_leaves_whatever_way_the_numbers_are_written(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    first, rest = shuffled_events()
    path = write_file(tmp_path / "events.ndjson", first + rest, hostile_lines())

    one, by_three_jobs = imported_alike_by_one_and_three_jobs(sessions, settings, path, clock, tmp_path)
    rejected = [orjson.loads(line) for line in (tmp_path / "three.ndjson").read_bytes().splitlines()]
    assert Counter(r["rule"] for r in rejected) == Counter(
        r["rule"] for r in map(orjson.loads, (tmp_path / "one.ndjson").read_bytes().splitlines())
    )
    # The hostile lines each counted once, wherever their job was.
    assert sum(r["rule"] == "malformed" for r in rejected) == 2
    refused = Counter(r["event_id"] for r in rejected)
    assert refused["bad-prefix"] == refused["nested-3"] == refused["no-number"] == 1
    assert {"spaced-1", "spaced-2", "spaced-3", "nested-1", "nested-2", "escaped-name"} <= set(by_three_jobs["events"])
    assert one["duplicates"] >= 1


def test_a_parallel_import_reads_a_file_in_blocks_as_one_job_reads_it_line_by_line(
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importer, "_FEED_BYTES", 300)  # two or three lines a block
    first, rest = shuffled_events()
    lines = [orjson.dumps(e) for e in first + rest]
    long_name = {**ALICE, "name": "名" * 100}  # a line longer than a block, refused for its name
    lines.insert(3, orjson.dumps(ev("activated", "+8613700137000", "2021-01-01", long_name, event_id="long")))
    lines[5:5] = [b"", b"  \t", b"not JSON, on line 8"]
    body = b"\r\n".join(lines[:10]) + b"\r\n" + b"\n".join(lines[10:])  # and no newline at the end
    path = tmp_path / "events.ndjson"
    path.write_bytes(codecs.BOM_UTF8 + body)

    one, _ = imported_alike_by_one_and_three_jobs(sessions, settings, path, clock, tmp_path)
    assert one["malformed: line 8 is not JSON"] == 1
    assert sum(n for key, n in one.items() if key.startswith("malformed")) == 1  # line 1 lost its mark
    assert one["bad_name: holder name must be 1 to 100 characters"] == 0  # a name of 100 is one
    assert one["accepted"] + one["duplicates"] + one["rejected"] == len(lines) - 2  # the blank lines


def csv_text(events: list[dict[str, Any]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in events:
        holder = e.get("holder") or {}
        writer.writerow(
            [e["event_id"], e["type"], e["number"], e["occurred_at"], holder.get("id_number", ""),
             holder.get("name", ""), e.get("to_carrier", "")]
        )  # fmt: skip
    return out.getvalue().encode()


def hostile_rows() -> bytes:
    """CSV rows whose job is not plain to tell, or which run over more than one line."""
    rows = [
        # A name in quotes that runs over two lines: one row, of ODD's job.
        b'row-2-lines,activated,' + ODD.encode() + b',2021-01-01T10:00:00+08:00,' + BOB["id_number"].encode()
        + b',"' + BOB["name"].encode() + b'\n",',
        b"too-few,suspended," + ODD.encode(),  # refused, once
        b"not-utf8,activated,+8613900139000,2021-01-01T10:00:00+08:00," + ALICE["id_number"].encode() + b",\xff\xfe,",
        # One number written two ways, in two rows.
        b"spaced-1,activated,+86 139 0013 9000,2021-02-01T10:00:00+08:00," + ALICE["id_number"].encode() + b","
        + ALICE["name"].encode() + b",",
        "spaced-2,suspended,+86１３９００１３９０００,2021-03-01T10:00:00+08:00,,,".encode(),
    ]  # fmt: skip
    return b"\r\n".join(rows) + b"\r\n"


def test_a_parallel_import_of_a_csv_file_leaves_the_ledger_one_job_leaves(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    first, rest = shuffled_events()
    path = tmp_path / "events.csv"
    path.write_bytes(csv_text(first + rest) + hostile_rows())

    _, by_three_jobs = imported_alike_by_one_and_three_jobs(sessions, settings, path, clock, tmp_path)
    refused = Counter(r["event_id"] for r in map(orjson.loads, (tmp_path / "three.ndjson").read_bytes().splitlines()))
    assert refused["too-few"] == refused["not-utf8"] == 1
    assert {"row-2-lines", "spaced-1", "spaced-2"} <= set(by_three_jobs["events"])
    assert len(by_three_jobs["events"]) > len(first)


def test_an_event_id_given_to_numbers_of_two_jobs_is_kept_once(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    events = [
        ev("activated", EVEN, "2021-01-01", ALICE, event_id="twice"),
        ev("activated", ODD, "2021-01-01", BOB, event_id="twice"),
        ev("activated", "+8613800138002", "2021-01-01", BOB, event_id="once"),
    ]
    totals = importer.import_file(settings, write_file(tmp_path / "e.ndjson", events), "CMCC", clock=clock, jobs=2)
    assert (totals.accepted, totals.duplicates, totals.rejected) == (2, 1, 0)
    with sessions() as session:
        numbers = list(session.scalars(select(LedgerEvent.number).where(LedgerEvent.event_id == "twice")))
    assert len(numbers) == 1 and numbers[0] in (13800138000, 13800138001)


@pytest.mark.parametrize("filler", [0, repo.PROBE_AT_MOST + 200], ids=["short chunk", "long chunk"])
def test_a_job_that_meets_its_event_id_being_written_by_another_writer_counts_it_a_duplicate(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock, tmp_path: Path, filler: int
) -> None:
    # Another writer holds EVEN's partition and has written the id "lock-<EVEN>" for EVEN,
    # not committed yet; the import gives the same id to ODD, of the other job. In a long
    # chunk (more events of ODD's job) the ids are not looked up first: the key finds it.
    events = [
        ev("activated", ODD, "2021-01-01", BOB, event_id=f"lock-{EVEN}"),
        ev("activated", "+8613800138003", "2021-01-01", BOB, event_id="odd-2"),
        *(
            ev("activated", f"+{n}", "2021-01-01", BOB, event_id=f"fill-{n}")
            for n in numbers_of_the_job_of(ODD, filler)
        ),
    ]
    path = write_file(tmp_path / "e.ndjson", events)
    done: list[importer.ImportTotals | BaseException] = []

    def run() -> None:
        try:
            done.append(importer.import_file(settings, path, "CMCC", clock=clock, jobs=2))
        except BaseException as exc:
            done.append(exc)

    importing = threading.Thread(target=run)
    with sessions() as writer, writer.begin():
        write_in(writer, settings, clock, EVEN, [ledger_partition(13800138000)])
        importing.start()
        importing.join(1.0)  # the job of ODD waits on the id in flight
        assert not done
    importing.join(30)
    (totals,) = done
    assert isinstance(totals, importer.ImportTotals), totals
    assert (totals.accepted, totals.duplicates, totals.rejected) == (1 + filler, 1, 0)
    with sessions() as session:
        numbers = list(session.scalars(select(LedgerEvent.number).where(LedgerEvent.event_id == f"lock-{EVEN}")))
    assert numbers == [13800138000]


def test_running_a_parallel_import_again_finds_every_event_held(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    first, rest = shuffled_events()
    path = write_file(tmp_path / "events.ndjson", first + rest)
    once = importer.import_file(settings, path, "CMCC", clock=clock, jobs=2)
    again = importer.import_file(settings, path, "CMCC", clock=clock, jobs=2)
    assert again.accepted == 0
    assert again.duplicates == once.accepted + once.duplicates
    assert again.rejected == once.rejected  # refused again, for the same reasons
    assert again.by_rule == once.by_rule


def test_a_parallel_import_cut_short_by_a_broken_file_keeps_whole_commits_and_goes_on_when_run_again(
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = settings.model_copy(update={"ingest_chunk_size": 20, "import_commit_events": 40})
    # Each number's events in time order, so that where the commits fall changes nothing.
    events = list(generate(SynthConfig(numbers=120, seed=23, carriers=("CMCC",))))
    for event in events:
        event.pop("carrier")
    path = write_file(tmp_path / "events.ndjson", events)
    lines = len(events)

    monkeypatch.setattr(importer, "_FEED_BYTES", 2_000)  # blocks of a dozen lines
    blocks = importer._ndjson_blocks

    def unreadable_after(raw: Any) -> Any:
        yield from islice(blocks(raw), lines // 12 - 10)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(importer, "_ndjson_blocks", unreadable_after)
    with pytest.raises(importer.ImportFailed, match=r"stopped: OSError: .* Input/output error; what was committed"):
        importer.import_file(small, path, "CMCC", clock=clock, jobs=2)
    with sessions() as session:
        kept = len(ledger(session)["events"])
    assert 0 < kept < lines
    monkeypatch.setattr(importer, "_ndjson_blocks", blocks)
    again = importer.import_file(small, path, "CMCC", clock=clock, jobs=2)
    with sessions() as session:
        after = ledger(session)
    forget_the_ledger(sessions)
    importer.import_file(small, path, "CMCC", clock=clock, jobs=2)
    with sessions() as session:
        assert ledger(session)["tenures"] == after["tenures"]  # as if it had never been cut short
    assert again.duplicates >= kept


def test_a_job_that_dies_stops_the_import_and_says_which(
    settings: Settings, clock: FixedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, rest = shuffled_events()
    path = write_file(tmp_path / "events.ndjson", first + rest)
    import_events = importer._import_events

    def dying(*args: Any, **kwargs: Any) -> Any:
        if 1 in (args[5] if len(args) > 5 else kwargs.get("partitions") or ()):
            os._exit(3)  # the job of the odd partitions, as if killed
        return import_events(*args, **kwargs)

    monkeypatch.setattr(importer, "_import_events", dying)
    with pytest.raises(importer.ImportFailed, match="import job 1 ended with exit code 3"):
        importer.import_file(settings, path, "CMCC", clock=clock, jobs=2)
    monkeypatch.setattr(importer, "_import_events", import_events)
    again = importer.import_file(settings, path, "CMCC", clock=clock, jobs=2)
    assert again.accepted > 0


def test_an_interrupted_parallel_import_counts_the_commits_its_jobs_made_before_it_heard_of_them(
    engine: Engine, settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    small = settings.model_copy(update={"ingest_chunk_size": 20, "import_commit_events": 40})
    events = list(generate(SynthConfig(numbers=600, seed=29, carriers=("CMCC",))))
    for event in events:
        event.pop("carrier")
    path = write_file(tmp_path / "events.ndjson", events)
    totals = importer.ImportTotals()

    def kept() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT COUNT(*) FROM ledger_events")).scalar_one())

    holder = engine.connect()

    def busy_then_ctrl_c(_done: int) -> None:
        # This process is busy (here, in its progress callback) while the jobs go on
        # committing and reporting; then Ctrl+C, with their reports still unread.
        until(lambda: kept() > totals.accepted)
        holder.begin()
        wait_for_ledger_writers(holder)  # the jobs' next commits wait: the count stays
        # Both jobs wait at their next commit: each has reported the ones before.
        until(lambda: waiting_for_the_ledger(engine) == 2)
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            importer.import_file(small, path, "CMCC", busy_then_ctrl_c, clock=clock, jobs=2, totals=totals)
        assert 0 < totals.accepted == kept() < len(events)
    finally:
        holder.close()


# ----- the locks ----------------------------------------------------------------------


def chunk_of(settings: Settings, session: Session, clock: FixedClock, number: str, event_id: str) -> ParsedChunk:
    carrier = repo.carrier_by_code(session, "CMCC")
    assert carrier is not None
    parsed = service.parser_for(session, carrier, clock=clock, settings=settings).parse(
        ev("activated", number, "2021-01-01", ALICE, event_id=event_id)
    )
    assert not isinstance(parsed, Rejection)
    return ParsedChunk([parsed], [], 0)


def write_in(session: Session, settings: Settings, clock: FixedClock, number: str, partitions: list[int] | None) -> int:
    """Write an activation of ``number`` in ``session``; the revision it makes."""
    carrier = repo.carrier_by_code(session, "CMCC")
    assert carrier is not None
    chunk = chunk_of(settings, session, clock, number, f"lock-{number}")
    return service.ingest_parsed(
        session, carrier, [chunk], clock=clock, settings=settings, source="test", partitions=partitions
    ).revision


def test_writers_of_other_partitions_go_on_and_writers_of_the_same_numbers_wait(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock
) -> None:
    held = ledger_partition(13800138000)
    with sessions() as holder, holder.begin():
        write_in(holder, settings, clock, EVEN, [held])  # not committed yet

        with sessions() as other, other.begin():
            other.execute(text("SET LOCAL lock_timeout = '5s'"))
            write_in(other, settings, clock, ODD, [ledger_partition(13800138001)])  # goes on at once

        for partitions in ([held, (held + 1) % LEDGER_PARTITIONS], None):  # the same partition; the whole ledger
            with sessions() as waiting, waiting.begin():
                waiting.execute(text("SET LOCAL lock_timeout = '200ms'"))
                with pytest.raises(OperationalError, match="lock timeout"), ledger_write_lock(waiting, partitions):
                    pass


def test_a_writer_cannot_write_numbers_outside_its_partitions(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock
) -> None:
    with sessions() as session, session.begin():
        with pytest.raises(ValueError, match="outside this writer's ledger partitions"):
            write_in(session, settings, clock, EVEN, [ledger_partition(13800138001)])
        session.rollback()


def test_the_check_index_does_not_skip_a_revision_committed_after_a_later_one(
    engine: Engine, sessions: sessionmaker[Session], settings: Settings, clock: FixedClock
) -> None:
    index = LedgerIndex()
    with sessions() as session:
        index.refresh(session)
    earlier = sessions()
    earlier.begin()
    try:
        write_in(earlier, settings, clock, EVEN, [ledger_partition(13800138000)])  # the lower revision, in flight
        with sessions() as later, later.begin():
            write_in(later, settings, clock, ODD, [ledger_partition(13800138001)])  # committed first

        def refresh() -> None:
            with sessions() as session:
                index.refresh(session)

        reader = threading.Thread(target=refresh)
        reader.start()
        reader.join(0.5)
        earlier.commit()
    finally:
        earlier.close()
    reader.join(10)
    assert not reader.is_alive()
    refresh()  # and once more, as the hub does every so often
    assert index.lookup(13800138001)[0] is not None
    assert index.lookup(13800138000)[0] is not None


def test_the_check_index_takes_a_whole_ledger_write_at_once_while_jobs_started_after_it_are_in_flight(
    sessions: sessionmaker[Session], settings: Settings, clock: FixedClock
) -> None:
    # A carrier's batch through the API holds the whole ledger: every revision below its
    # own has committed. The checks see it at once, even when an import's jobs take the
    # ledger right after it and are still writing.
    index = LedgerIndex()
    with sessions() as session:
        index.refresh(session)
    with sessions() as carrier_api, carrier_api.begin():
        written = write_in(carrier_api, settings, clock, EVEN, None)
    job = sessions()
    job.begin()
    try:
        write_in(job, settings, clock, ODD, [ledger_partition(13800138001)])  # in flight

        def refresh() -> None:
            with sessions() as session:
                index.refresh(session, settled=written)

        reader = threading.Thread(target=refresh)
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the refresh waited for the job"
        assert index.lookup(13800138000)[0] is not None
        assert index.lookup(13800138001)[0] is None
        job.commit()
    finally:
        job.close()
    with sessions() as session:
        index.refresh(session)
    assert index.lookup(13800138001)[0] is not None
