"""`ledger import` as a library call: whole commits, and the process left as it was."""

from __future__ import annotations

import csv
import gc
import io
import os
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import ALICE, BOB, ev
from tongcha.kit.clock import FixedClock
from tongcha.kit.db import LEDGER_PARTITIONS
from tongcha.kit.digests import Digester
from tongcha.kit.phone import PLAIN_NUMBER, InvalidNumber, parse_mobile
from tongcha.kit.settings import Settings
from tongcha.ledger import importer
from tongcha.ledger.models import LedgerEvent, LedgerRejection, ReassignmentCheck, Tenure
from tongcha.ledger.parse import EventParser, Rejection, csv_event, csv_plain_row


@pytest.fixture
def small_commits(settings: Settings) -> Settings:
    """Chunks of 2 events, a commit every 4: a short file spans several commits."""
    return settings.model_copy(update={"ingest_chunk_size": 2, "import_commit_events": 4})


@pytest.fixture
def collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def write_ndjson(path: Path, events: list[dict[str, object]], tail: bytes = b"") -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events) + tail)
    return path


def events_for(count: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(count):
        number = f"+86138001381{i:02d}"
        out.append(ev("activated", number, "2020-01-01", ALICE, event_id=f"imp-a{i}"))
        # A second activation on the open tenure: refused, and its traceback is garbage.
        out.append(ev("activated", number, "2020-02-01", BOB, event_id=f"imp-b{i}"))
    return out


@pytest.mark.usefixtures("parties", "collector_on")
def test_an_import_over_several_commits_keeps_every_event_and_leaves_the_collector_as_it_was(
    small_commits: Settings, sessions: sessionmaker[Session], clock: FixedClock, tmp_path: Path
) -> None:
    path = write_ndjson(tmp_path / "events.ndjson", events_for(6))
    totals = importer.import_file(small_commits, path, "CMCC", clock=clock)
    assert (totals.accepted, totals.duplicates, totals.rejected) == (6, 0, 6)
    assert set(totals.by_rule) == {"tenure_open: activation while a tenure is open since 2020-01-01"}
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEvent)) == 6
        assert session.scalar(select(func.count()).select_from(Tenure)) == 6
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def write_csv(path: Path, count: int, tail: bytes = b"") -> Path:
    lines = ["event_id,type,number,occurred_at,id_number,name,to_carrier"]
    for i in range(count):
        day = f"2020-01-{1 + i % 28:02d}"
        lines.append(f"cut-{i},activated,+861380014{i:04d},{day}T10:00:00+08:00,{ALICE['id_number']},{ALICE['name']},")
    path.write_bytes(("\n".join(lines) + "\n").encode() + tail)
    return path


class _FailingDisk(io.RawIOBase):
    """A file whose reads fail with an I/O error from byte ``after`` on."""

    def __init__(self, path: Path, after: int) -> None:
        self._file = io.FileIO(path, "rb")
        self._after = after

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readinto(self, buffer: Any) -> int:
        room = self._after - self._file.tell()
        if room <= 0:
            raise OSError(5, "Input/output error")
        return self._file.readinto(memoryview(buffer)[:room])

    def close(self) -> None:
        self._file.close()
        super().close()


def disk_failing_after(path: Path, after: int) -> Path:
    """``path``, as a disk that fails to read it past byte ``after`` gives it."""

    class FailingPath(type(Path())):  # type: ignore[misc]
        def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if mode != "rb":
                return super().open(mode, *args, **kwargs)
            return io.BufferedReader(_FailingDisk(Path(self), after))

    return cast(Path, FailingPath(path))


@pytest.mark.usefixtures("parties", "collector_on")
@pytest.mark.parametrize("jobs", [1, 2])
def test_an_import_cut_short_by_a_broken_file_keeps_whole_commits_and_leaves_the_collector_as_it_was(
    settings: Settings,
    sessions: sessionmaker[Session],
    clock: FixedClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    jobs: int,
) -> None:
    monkeypatch.setattr(importer, "_FEED_BATCH", 10)  # jobs get rows before the disk fails
    monkeypatch.setattr(importer, "_FEED_BYTES", 2_000)  # and blocks of lines
    per_commit = settings.model_copy(update={"ingest_chunk_size": 50, "import_commit_events": 100})

    # 400 rows (~40 KB), and the disk fails after seven eighths of them: after several commits.
    path = write_csv(tmp_path / "events.csv", 400)
    failing = disk_failing_after(path, path.stat().st_size * 7 // 8)
    totals = importer.ImportTotals()
    with pytest.raises(
        importer.ImportFailed, match=r"stopped: OSError: .* Input/output error; what was committed is kept"
    ):
        importer.import_file(per_commit, failing, "CMCC", clock=clock, jobs=jobs, totals=totals)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    with sessions() as session:
        kept = session.scalar(select(func.count()).select_from(LedgerEvent))
    assert kept is not None and 0 < kept < 400 and kept % 100 == 0  # whole commits only
    assert totals.accepted == kept  # what the caller is told was kept
    # The carrier mends the file and runs it again: what was kept counts as duplicates.
    write_csv(path, 400)
    again = importer.import_file(per_commit, path, "CMCC", clock=clock, jobs=jobs)
    assert (again.accepted, again.duplicates, again.rejected) == (400 - kept, kept, 0)


@pytest.mark.usefixtures("parties", "collector_on")
def test_a_one_job_import_interrupted_after_two_commits_keeps_them_tells_the_caller_and_goes_on_when_run_again(
    settings: Settings, sessions: sessionmaker[Session], clock: FixedClock, tmp_path: Path
) -> None:
    per_commit = settings.model_copy(update={"ingest_chunk_size": 50, "import_commit_events": 100})
    path = write_csv(tmp_path / "events.csv", 400)
    commits = []

    def ctrl_c_after_the_second_commit(done: int) -> None:
        commits.append(done)
        if len(commits) == 2:
            raise KeyboardInterrupt

    totals = importer.ImportTotals()
    with pytest.raises(KeyboardInterrupt):
        importer.import_file(
            per_commit, path, "CMCC", ctrl_c_after_the_second_commit, clock=clock, jobs=1, totals=totals
        )
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(LedgerEvent)) == 200
    assert (totals.accepted, totals.duplicates, totals.rejected) == (200, 0, 0)
    again = importer.import_file(per_commit, path, "CMCC", clock=clock)
    assert (again.accepted, again.duplicates, again.rejected) == (200, 200, 0)


@pytest.mark.usefixtures("parties")
def test_a_file_without_extension_starting_with_a_byte_order_mark_is_read_as_ndjson(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "events-from-windows"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(orjson.dumps(e) + b"\r\n" for e in events_for(3)))
    totals = importer.import_file(settings, path, "CMCC", clock=clock)
    assert (totals.accepted, totals.rejected) == (3, 3)
    assert [rule.split(":")[0] for rule in totals.by_rule] == ["tenure_open"]  # the second activations


@pytest.mark.usefixtures("parties")
def test_a_file_without_extension_whose_first_line_is_broken_is_read_as_ndjson_and_only_that_line_refused(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "events"
    write_ndjson(path, events_for(2))
    path.write_bytes(b'"event_id": "cut off at the start of the file\n' + path.read_bytes())
    totals = importer.import_file(settings, path, "CMCC", clock=clock)
    assert (totals.accepted, totals.rejected) == (2, 3)
    assert totals.by_rule["malformed: line 1 is not JSON"] == 1


@pytest.mark.usefixtures("parties")
def test_a_file_without_extension_starting_with_a_header_is_read_as_csv(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "events"
    path.write_bytes(write_csv(tmp_path / "events.csv", 3).read_bytes())
    totals = importer.import_file(settings, path, "CMCC", clock=clock)
    assert (totals.accepted, totals.rejected) == (3, 0)


@pytest.mark.usefixtures("parties")
def test_a_csv_file_starting_with_a_byte_order_mark_has_its_header_read(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "events.csv", 2)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Excel saves UTF-8
    totals = importer.import_file(settings, path, "CMCC", clock=clock)
    assert (totals.accepted, totals.rejected) == (2, 0)


@pytest.mark.usefixtures("parties")
def test_a_csv_row_with_bytes_that_are_not_utf8_is_refused_and_the_rest_imported(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    # The whole import stopped with a UnicodeDecodeError traceback at the first such byte.
    path = write_csv(tmp_path / "events.csv", 3)
    bad = f"latin-1,activated,+8613900139001,2020-01-01T10:00:00+08:00,{ALICE['id_number']},Jos\xe9,\n".encode(
        "latin-1"
    )
    good = f"after,activated,+8613900139002,2020-01-01T10:00:00+08:00,{BOB['id_number']},{BOB['name']},\n".encode()
    bad_id = f"latin-\xe9,activated,+8613900139003,2020-01-01T10:00:00+08:00,{BOB['id_number']},x,\n".encode("latin-1")
    path.write_bytes(path.read_bytes() + bad + good + bad_id)
    totals = importer.import_file(settings, path, "CMCC", clock=clock, rejects=tmp_path / "rejects.ndjson")
    assert (totals.accepted, totals.rejected) == (4, 2)
    assert sorted(totals.by_rule) == [
        "bad_event_id: event_id must be 1 to 128 printable characters, not all spaces",
        "bad_name: holder name must be printable UTF-8 text",
    ]
    rejects = [orjson.loads(line) for line in (tmp_path / "rejects.ndjson").read_bytes().splitlines()]
    assert sorted((r["rule"], r["event_id"]) for r in rejects) == [
        ("bad_event_id", "latin-\\xe9"),
        ("bad_name", "latin-1"),
    ]


@pytest.mark.usefixtures("parties")
def test_an_ndjson_event_id_escaping_a_lone_surrogate_is_refused_and_the_rest_imported(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    # JSON may escape a lone surrogate; orjson refused the line as "not JSON".
    bad = b'{"event_id": "\\ud800", "type": "cancelled", "number": "+8613900139009", "occurred_at": "2020-03-02T10:00:00+08:00"}\n'
    path = write_ndjson(tmp_path / "events.ndjson", events_for(2), tail=bad)
    totals = importer.import_file(settings, path, "CMCC", clock=clock, rejects=tmp_path / "rejects.ndjson")
    assert (totals.accepted, totals.rejected) == (2, 3)
    rejects = [orjson.loads(line) for line in (tmp_path / "rejects.ndjson").read_bytes().splitlines()]
    assert ("bad_event_id", "\\ud800") in [(r["rule"], r["event_id"]) for r in rejects]


@pytest.mark.usefixtures("parties")
def test_a_csv_field_over_the_csv_limit_is_one_refused_row_and_the_rest_imported(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    # csv.Error (field larger than field limit) stopped the whole import with a traceback.
    path = write_csv(tmp_path / "events.csv", 3)
    huge = f'huge,activated,+8613900139001,2020-01-01T10:00:00+08:00,{ALICE["id_number"]},"{"x" * 200_000}",\n'
    good = f"after,activated,+8613900139002,2020-01-01T10:00:00+08:00,{BOB['id_number']},{BOB['name']},\n"
    path.write_bytes(path.read_bytes() + (huge + good).encode())
    totals = importer.import_file(settings, path, "CMCC", clock=clock)
    assert (totals.accepted, totals.rejected) == (4, 1)
    assert list(totals.by_rule) == ["malformed: line 5 is not a CSV row"]


@pytest.mark.usefixtures("parties")
def test_the_csv_example_in_the_ledger_docs_imports_as_written(
    settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    # docs/ledger.md named no CSV columns: a carrier had to read parse.py to write a file.
    doc = (Path(__file__).parents[2] / "docs" / "ledger.md").read_text()
    example = doc.split("```csv\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "events.csv"
    path.write_text(example)
    totals = importer.import_file(settings, path, "CMCC", clock=clock)
    assert (totals.accepted, totals.duplicates, totals.rejected) == (2, 0, 0), totals.by_rule


@pytest.mark.usefixtures("parties")
def test_checking_a_file_leaves_no_file_open(settings: Settings, clock: FixedClock, tmp_path: Path) -> None:
    # The look at the file's head to tell CSV from NDJSON left it open: a ResourceWarning.
    path = tmp_path / "asks"
    path.write_bytes(b"number,since\n+8613800138000,2020-01-01\n")
    sink = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        stats = importer.check_file(settings, path, sink, "JD", clock=clock)
        gc.collect()
    assert [str(w.message) for w in caught if str(path) in str(w.message)] == []
    assert (stats.rows, sink.getvalue()) == (
        1,
        b"number,since,result,last_change_on,error\n+8613800138000,2020-01-01,no_data,,\n",
    )


class _CutShortAfterItsFirstAnswers(io.BytesIO):
    """An output that is interrupted (Ctrl+C) just after it took the first answers."""

    def write(self, block: Any) -> int:
        super().write(block)
        raise KeyboardInterrupt


@pytest.mark.usefixtures("parties")
def test_a_batch_check_interrupted_after_its_first_answers_has_every_answer_given_on_record(
    settings: Settings, sessions: sessionmaker[Session], clock: FixedClock, tmp_path: Path
) -> None:
    path = tmp_path / "asks.csv"
    path.write_bytes(b"number,since\n" + b"".join(b"+86138%08d,2020-01-01\n" % i for i in range(6_000)))
    sink = _CutShortAfterItsFirstAnswers()
    with pytest.raises(KeyboardInterrupt):
        importer.check_file(settings, path, sink, "JD", clock=clock)
    given = sink.getvalue().count(b"\n") - 1
    with sessions() as session:
        on_record = session.scalar(select(func.count()).select_from(ReassignmentCheck))
    assert given == on_record == 6_000


def test_an_import_runs_a_job_per_core_it_may_use_on_postgresql_and_one_on_sqlite() -> None:
    on_pg = Settings(env="dev", database_url="postgresql://tongcha@127.0.0.1/tongcha")
    on_sqlite = Settings(env="dev", database_url="sqlite:///tongcha.db")
    assert importer.import_jobs(on_sqlite, 4) == 1
    assert importer.import_jobs(on_pg, 3) == 3
    allowed = os.sched_getaffinity(0)
    assert importer.import_jobs(on_pg) == min(len(allowed), importer.MAX_JOBS)
    os.sched_setaffinity(0, {min(allowed)})  # as in a container given one core of many
    try:
        assert importer.import_jobs(on_pg) == 1
    finally:
        os.sched_setaffinity(0, allowed)


def test_an_imports_summary_keeps_a_thousand_reasons_of_a_rule_and_counts_the_rest() -> None:
    totals = importer.ImportTotals(rejected=importer.REASONS_KEPT + 3)
    for line in range(1, importer.REASONS_KEPT + 2):
        totals.refused("malformed", f"line {line} is not JSON")
    totals.refused("malformed", "line 1 is not JSON")  # a reason kept already is counted with it
    totals.refused("bad_type", "no such type")  # another rule keeps reasons of its own
    (rule, count, reasons), other = totals.rules()
    assert (rule, count, len(reasons), reasons[0]) == (
        "malformed",
        importer.REASONS_KEPT + 2,
        1_000,
        "line 1 is not JSON",
    )
    assert f"line {importer.REASONS_KEPT + 1} is not JSON" not in reasons
    assert totals.unkept == {"malformed": 1}
    assert other == ("bad_type", 1, ["no such type"])


def test_an_imports_refusals_are_summed_by_rule_whatever_day_or_line_their_reasons_name() -> None:
    totals = importer.ImportTotals(rejected=6)
    totals.by_rule.update(
        {
            "in_quarantine: activation inside quarantine, which lasts until 2025-03-21": 2,
            "in_quarantine: activation inside quarantine, which lasts until 2026-06-08": 1,
            "malformed: line 7 has 2 fields, the header has 7": 1,
            "no_open_tenure: cancellation of a number nobody holds on 2024-05-08": 1,
            "no_open_tenure: cancellation of a number nobody holds on 2024-05-09": 1,
        }
    )
    assert totals.rules() == [
        (
            "in_quarantine",
            3,
            [
                "activation inside quarantine, which lasts until 2025-03-21",
                "activation inside quarantine, which lasts until 2026-06-08",
            ],
        ),
        (
            "no_open_tenure",
            2,
            [
                "cancellation of a number nobody holds on 2024-05-08",
                "cancellation of a number nobody holds on 2024-05-09",
            ],
        ),
        ("malformed", 1, ["line 7 has 2 fields, the header has 7"]),
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"\+86[0-9]{11}", fullmatch=True)
    | st.from_regex(r"(\+86)?1[0-9]{10}", fullmatch=True)
    | st.builds(lambda d: "+861" + d, st.text(st.characters(categories=["Nd"]), min_size=10, max_size=10))
    | st.text(max_size=16)
)
def test_a_rows_job_is_told_by_its_number_as_the_pattern_and_phonenumbers_tell_it(written: str) -> None:
    shaped = PLAIN_NUMBER.fullmatch(written)
    if shaped is not None:
        expected: int | None = int(shaped.group(1))
    else:
        try:
            expected = parse_mobile(written)
        except InvalidNumber:
            expected = None
    assert importer._routing_number(written) == expected


def test_a_commit_takes_its_chunks_as_its_writes_ask_and_writes_the_same_ones_again() -> None:
    from tongcha.ledger.service import ParsedChunk

    chunks = [ParsedChunk([], [], n) for n in range(6)]
    pulled: list[int] = []

    def stream() -> Iterator[ParsedChunk]:
        for chunk in chunks[1:]:
            pulled.append(chunk.duplicates)
            yield chunk

    rest = stream()
    taken = importer._Taken(chunks[0], islice(rest, 3))
    writing = iter(taken)
    assert next(writing) is chunks[0]
    assert pulled == []  # the first chunk's writes need no other chunk parsed
    assert next(writing) is chunks[1]
    assert pulled == [1]
    # A commit written again (after a conflict) gets the chunks it had, then the rest of its own.
    assert list(taken) == chunks[:4]
    assert list(taken) == chunks[:4]
    assert pulled == [1, 2, 3]  # and never one of the next commit's
    assert next(rest) is chunks[4]


_COMMON = (
    b'{"event_id":"e-1","type":"activated","number":"+8613800138000","occurred_at":"2021-01-01T10:00:00Z",'
    b'"holder":{"id_number":"11010519491231002X","name":"\xe6\x9e\x97"}}'
)
_PIECES = [b"{", b"}", b"[", b"]", b"\\", b'"', b":", b" ", b"+86", b'"number"', b'"number":"', b"1", b"0", b"9"]


@st.composite
def near_common_lines(draw: st.DrawFn) -> bytes:
    """The common line with a few bytes changed, put in or taken out, often near its number."""
    line = bytearray(draw(st.sampled_from([_COMMON, _COMMON.replace(b"+86", b""), _COMMON.replace(b'"+86', b' "+86')])))
    key = line.find(b'"number"')
    for _ in range(draw(st.integers(0, 3))):
        near = draw(st.booleans())
        at = draw(st.integers(max(0, key - 3), key + 30) if near else st.integers(0, len(line)))
        at = min(at, len(line))
        change = draw(st.sampled_from(["put", "cut", "swap"]))
        piece = draw(st.sampled_from(_PIECES) | st.binary(min_size=1, max_size=3))
        if change == "put":
            line[at:at] = piece
        elif change == "cut":
            del line[at : at + draw(st.integers(1, 4))]
        else:
            line[at : at + len(piece)] = piece
    return bytes(line).replace(b"\n", b"")


@settings(max_examples=500, deadline=None)
@example([_COMMON.replace(b'"type"', b'"t[ype"'), _COMMON.replace(b'"type"', b'"t}ype"')], 2)  # a bracket, a brace
@example([_COMMON.replace(b'"type"', b'"t{ype"'), _COMMON.replace(b"e-1", b"e\\u0031")], 3)  # a second brace, an escape
@example([_COMMON + _COMMON, _COMMON.replace(b'"+86', b'"+8'), _COMMON.replace(b'000"', b'00"')], 5)
@example([_COMMON.replace(b'"+86', b' "+86'), b" " + _COMMON, _COMMON.replace(b':"+8613', b':"+8623')], 4)
@given(
    st.lists(near_common_lines() | st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=6),
    st.integers(1, 8),
)
def test_a_lines_job_told_in_c_for_a_whole_block_is_the_one_its_text_tells(lines: list[bytes], jobs: int) -> None:
    block = b"".join(line + b"\n" for line in lines)
    job, starts, ends = importer._line_jobs(block, jobs)
    assert [block[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)] == [line + b"\n" for line in lines]
    for line, told in zip(lines, job.tolist(), strict=True):
        number = importer._number_in_text(line)
        if told != importer._UNTOLD:
            assert number is not None and importer._job_of(number, jobs) == told, line
        elif number is not None and line.startswith(b"{"):
            # Left to the Python way only when the number is written spaced out.
            at = line.find(b'"number"') + 8
            assert line[at : at + 2] != b':"', line


# ----- a parallel import's CSV feed ----------------------------------------------------------


class _Outbox:
    """Stands for a job's pipe: keeps what the feeder sends it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> None:
        self.sent.append(message)


class _Inbox:
    """Stands for a job's end of the pipe: gives what was sent, then the end."""

    def __init__(self, sent: list[Any]) -> None:
        self._messages = iter([*sent, None])

    def recv(self) -> Any:
        return next(self._messages)


_HEADERS = [
    b"event_id,type,number,occurred_at,id_number,name,to_carrier",
    b"\xef\xbb\xbfevent_id,type,number,occurred_at,id_number,name,to_carrier",  # Excel's byte order mark
    b"number,event_id,note,type,occurred_at,name,id_number",  # another order, a column more
    b'"event_id","type","number","occurred_at","id_number","name","to_carrier"',  # quoted
    b"event_id,type,occurred_at",  # no number: refused whole
    b"",
]


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A carrier's CSV file: mostly plain lines, and now and then a line with quoted
    fields, or one the csv module must read (a quote inside a field, text after a closing
    quote, a field running over two lines, a carriage return alone, a NUL byte), a blank
    line, a row of the wrong width, bytes that are not UTF-8."""
    header = draw(st.sampled_from(_HEADERS))
    columns = header.removeprefix(b"\xef\xbb\xbf").replace(b'"', b"").split(b",")
    lines = [header]
    for n in range(draw(st.integers(0, 40))):
        number = (
            draw(
                st.sampled_from(
                    ["+86138001380", "138001380", "+86 138 0013 80", "+86１３８００１３８0", "+86238001380"]
                )
            )
            + f"{n % 100:02d}"
        )
        values = {
            b"event_id": f"e-{n % 30}",  # some ids again
            b"type": draw(st.sampled_from(["activated", "suspended", "cancelled", "transferred", "ported"])),
            b"number": number,
            b"occurred_at": f"2021-01-{1 + n % 28:02d}T10:00:00+08:00",
            b"id_number": BOB["id_number"],
            b"name": draw(st.sampled_from([BOB["name"], ALICE["name"], "林丽"])),  # a space: the Python way
            b"to_carrier": "",
            b"note": "x",
        }
        line = ",".join(values.get(c, "") for c in columns).encode()
        bends = ["quoted", "all quoted", "doubled", "inside", "after", "two lines", "cr", "nul", "blank", "short"]
        bend = draw(st.sampled_from(["none"] * 8 + [*bends, "latin"]))
        if bend == "quoted":
            line = line.replace("林丽".encode(), '"林, 丽"'.encode())
        elif bend == "all quoted":  # as some exporters write every field
            line = b",".join(b'"' + field + b'"' for field in line.split(b","))
        elif bend == "doubled":  # a quote inside a quoted field
            line = line.replace("林丽".encode(), '"林""丽"'.encode())
        elif bend == "inside":  # a quote inside a field not quoted: the csv module keeps it
            line = line.replace("林丽".encode(), '林"丽'.encode())
        elif bend == "after":  # text after the closing quote
            line = line.replace("林丽".encode(), '"林"丽'.encode())
        elif bend == "two lines":
            line = line.replace("林丽".encode(), '"林\n丽"'.encode())
        elif bend == "cr":
            line = line.replace(b",", b",\r", 1)
        elif bend == "nul":
            line += b"\x00"
        elif bend == "blank":
            line = b""
        elif bend == "short":
            line = line.rsplit(b",", 2)[0]
        elif bend == "latin":
            line = line.replace("林丽".encode(), "林丽".encode("gb18030"))
        lines.append(line)
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    return ending.join(lines) + draw(st.sampled_from([ending, b""]))


def parsers(count: int) -> list[Any]:
    """One parser's ``parse`` for each job, as each job makes of what it is fed."""
    now = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    return [
        EventParser(1, {"CMCC": 1}, Digester(b"test key", 1), ZoneInfo("Asia/Shanghai"), now, timedelta(0)).parse
        for _ in range(count)
    ]


@settings(max_examples=300, deadline=None)
@given(csv_files(), st.integers(1, 3), st.sampled_from([64, 300, 1 << 19]))
def test_a_parallel_csv_import_gives_each_job_the_events_the_csv_module_reads_for_it(
    body: bytes, jobs: int, block: int
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        path = Path(tmp) / "events.csv"
        path.write_bytes(body)
        patch.setattr(importer, "_FEED_BYTES", block)
        outs = [_Outbox() for _ in range(jobs)]
        with path.open("rb") as raw:
            importer._feed_rows(raw, cast(Any, outs), [0])
        fed = [list(importer._fed_rows(cast(Any, _Inbox(out.sent)))) for out in outs]
        read: list[list[Any]] = [[] for _ in range(jobs)]
        with path.open("rb") as raw:
            for item in importer._csv_records(raw):
                read[importer._job_of_row(item, jobs)].append(item if isinstance(item, Rejection) else csv_event(*item))
    # What each job's parser makes of what it is fed, and of what the csv module reads.
    got = [[parse(item) for item in items] for parse, items in zip(parsers(jobs), fed, strict=True)]
    expected = [[parse(item) for item in items] for parse, items in zip(parsers(jobs), read, strict=True)]
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(csv_files(), st.sampled_from([64, 300, 1 << 19]))
@example(b"event_id,type,number,occurred_at\ne1,activated,+8613800138000,2021-01-01T10:00:00+08:00\n\n\r\nx\n", 64)
def test_a_one_job_csv_import_reads_the_events_the_csv_module_reads(body: bytes, block: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        path = Path(tmp) / "events.csv"
        path.write_bytes(body)
        patch.setattr(importer, "_FEED_BYTES", block)
        with path.open("rb") as raw:
            items = list(importer._csv_rows(raw))
        with path.open("rb") as raw:
            read = [item if isinstance(item, Rejection) else csv_event(*item) for item in importer._csv_records(raw)]
    got, expected = ([parse(item) for item in each] for parse, each in zip(parsers(2), (items, read), strict=True))
    assert got == expected


@pytest.mark.parametrize(
    ("block", "simple"),
    [
        (b"e1,activated,13800138000\n", True),
        (b'"e1","activated","13800138000"\r\n', True),  # every field quoted
        (b'e1,"a, b",\n"",x\n', True),  # a comma inside quotes; an empty quoted field
        (b'e1,"a""b"\n', False),  # a quote inside a quoted field
        (b'e1,a"b\n', False),  # a quote inside a field not quoted
        (b'e1,"a"b\n', False),  # text after the closing quote
        (b'e1,"a\nb"\n', False),  # a field over two lines
        (b'e1,"a\rb"\n', False),  # a carriage return inside quotes
        (b'e1,ok\ne2,"a"b', False),  # the last line, with no newline, counts too
    ],
)
def test_a_csv_block_is_simple_when_each_quoted_field_is_quoted_whole(block: bytes, simple: bool) -> None:
    from tongcha.ledger._native import csv_simple

    assert csv_simple(block) is simple
    if simple:  # and then each line reads as the csv module reads it
        index = {"event_id": 0}
        for lineno, line in enumerate(block.split(b"\n")[:-1], 1):
            expected = next(csv.reader([line.removesuffix(b"\r").decode()]))
            assert csv_plain_row(index, len(expected), lineno, line) == (index, expected)


def test_a_plain_csv_lines_job_is_told_in_c_where_its_number_is_written_the_plain_way() -> None:
    from tongcha.ledger._native import csv_line_jobs

    lines = [
        b"e1,activated,+8613800138000\r\n",  # the number last, +86, a carriage return
        b"e2,activated,13900139000\n",  # no +86
        b"e3,activated,+86 139 0013 9000\n",  # spaced: the Python way
        b"e4,+8613900139000\n",  # a field short: the Python way
        b"+8613700137000,e5,activated\n",  # first, but the column is the third
        b'"e6","a, quoted","13900139000"\n',  # quoted fields, a comma inside one
        b'e7,activated,"139001""39000"\n',  # a quote inside a quoted field: the Python way
    ]
    block = b"".join(lines)
    job, starts, ends = (np.empty(len(lines), np.int64) for _ in range(3))
    assert csv_line_jobs(block, 2, 3, 3, LEDGER_PARTITIONS, job, starts, ends) == len(lines)
    told = [importer._job_of(13800138000, 3), importer._job_of(13900139000, 3)]
    untold = [importer._UNTOLD] * 3
    assert job.tolist() == [*told, *untold, importer._job_of(13900139000, 3), importer._UNTOLD]
    assert [block[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)] == lines


@pytest.mark.usefixtures("parties")
@pytest.mark.parametrize("jobs", [1, 2])
def test_repeats_in_later_commits_count_as_repeats_within_one_do(
    small_commits: Settings, sessions: sessionmaker[Session], clock: FixedClock, tmp_path: Path, jobs: int
) -> None:
    # The stream forgets the ids it has seen once they are committed, and the ledger's key
    # tells their repeats: the same outcome as within one commit, and as across jobs.
    first = [
        ev("activated", "+8613800138001", "2020-01-01", ALICE, event_id="r-a"),
        ev("activated", "+8613800138002", "2020-01-01", ALICE, event_id="r-b"),
        ev("activated", "+8613800138003", "2020-01-01", ALICE, event_id="r-c"),
        ev("activated", "+8613800138003", "2020-02-01", BOB, event_id="r-d"),  # refused: tenure open
    ]
    filler = [ev("activated", f"+86139001390{i:02d}", "2020-01-01", BOB, event_id=f"r-f{i}") for i in range(8)]
    repeats = [
        ev("activated", "+8613800138001", "2020-01-01", ALICE, event_id="r-a"),  # the same event again
        ev("activated", "+8613800138004", "2020-01-01", BOB, event_id="r-b"),  # its id, another number
        ev("activated", "+8613800138003", "2020-02-01", BOB, event_id="r-d"),  # the refused one again
        ev("cancelled", "+8613800138003", "2021-01-01", event_id="r-e"),
    ]
    path = write_ndjson(tmp_path / "events.ndjson", first + filler + repeats)
    totals = importer.import_file(small_commits, path, "CMCC", clock=clock, jobs=jobs)
    assert (totals.accepted, totals.duplicates, totals.rejected) == (12, 3, 1)
    with sessions() as session:
        stored = {(r.event_id, r.number) for r in session.execute(select(LedgerEvent.event_id, LedgerEvent.number))}
        refusals = session.scalars(select(LedgerRejection.event_id)).all()
    assert stored == {
        ("r-a", 13800138001), ("r-b", 13800138002), ("r-c", 13800138003), ("r-e", 13800138003),
        *((f"r-f{i}", 13900139000 + i) for i in range(8)),
    }  # fmt: skip
    assert refusals == ["r-d"]


@pytest.mark.parametrize("block", [1, 5, 1 << 19])
def test_a_file_in_another_encoding_is_read_as_utf8_whatever_its_blocks_cut(
    tmp_path: Path, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "_FEED_BYTES", block)
    text = "event_id,type,number,occurred_at,id_number,name,to_carrier\r\ne1,activated,+8613800138000,,,张伟𠀀,\r\n"
    path = tmp_path / "events.csv"
    path.write_bytes(text.encode("gb18030") + b"e2,\xff,\r\n")  # a byte GB18030 cannot read, kept
    with importer.utf8_copy(path, "GB18030") as copy:
        assert copy.name == "events.csv" and copy != path
        assert copy.read_bytes() == text.encode("utf-8") + b"e2,\xff,\r\n"
        assert not importer.looks_utf8(copy)
    assert not copy.exists()
    with importer.utf8_copy(path, "utf8") as same:
        assert same == path
    with pytest.raises(LookupError), importer.utf8_copy(path, "klingon"):
        pass
