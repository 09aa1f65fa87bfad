"""File-level ledger work for the command line: import events, check a batch."""

from __future__ import annotations

import codecs
import contextlib
import csv
import gc
import io
import json
import multiprocessing
import os
import re
import signal
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tongcha.kit.clock import Clock, SystemClock
from tongcha.kit.db import (
    DRIVER_ERRORS,
    LEDGER_PARTITIONS,
    database_trouble,
    find_by_code,
    ledger_partition,
    make_engine,
    make_sessionmaker,
    sqlstate,
)
from tongcha.kit.digests import Digester
from tongcha.kit.phone import PLAIN_NUMBER, InvalidNumber, parse_mobile
from tongcha.kit.settings import Settings
from tongcha.ledger import index as ledger_index
from tongcha.ledger import repository as repo
from tongcha.ledger import service
from tongcha.ledger._native import csv_line_jobs, csv_simple, line_jobs
from tongcha.ledger.batch import BatchChecker, BatchStats, split_blocks, whole_lines
from tongcha.ledger.models import Carrier, ReassignmentBatch
from tongcha.ledger.parse import (
    CsvRow,
    CsvShape,
    EventParser,
    Rejection,
    csv_event,
    csv_header,
    csv_plain_row,
    csv_records,
    csv_rows,
    csv_shape,
    ndjson_numbered,
    numbered_lines,
    sniff_format,
)
from tongcha.ledger.tasks import CheckLog, Receipts
from tongcha.platforms.models import Platform

# The distinct reasons an import's summary keeps of one rule. A reason names a day or a
# line, so a file of garbage would otherwise keep one for every line it has.
REASONS_KEPT = 1_000


@dataclass
class ImportTotals:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    # "rule: reason" of each refusal, counted, for up to REASONS_KEPT reasons a rule.
    by_rule: Counter[str] = field(default_factory=Counter)
    # Per rule, the refusals whose reasons came after REASONS_KEPT others: counted only.
    unkept: Counter[str] = field(default_factory=Counter)
    _reasons: Counter[str] = field(default_factory=Counter, repr=False)

    @property
    def events(self) -> int:
        """Every event the commits counted: accepted, duplicates and refused."""
        return self.accepted + self.duplicates + self.rejected

    def refused(self, rule: str, reason: str) -> None:
        """Count one refusal (not in ``rejected``, which the caller counts)."""
        key = f"{rule}: {reason}"
        if key in self.by_rule:
            self.by_rule[key] += 1
        elif self._reasons[rule] < REASONS_KEPT:
            self._reasons[rule] += 1
            self.by_rule[key] = 1
        else:
            self.unkept[rule] += 1

    def rules(self) -> list[tuple[str, int, list[str]]]:
        """Each rule the refusals broke, how often, and its reasons, most frequent first:
        a reason names a day or a line, so one rule may read many ways. A rule's refusals
        past its ``REASONS_KEPT`` reasons are in its count (and in ``unkept``), their
        reasons not listed."""
        grouped: dict[str, tuple[int, list[str]]] = {}
        for key, count in self.by_rule.most_common():
            rule, _, reason = key.partition(": ")
            total, reasons = grouped.get(rule, (self.unkept[rule], []))
            grouped[rule] = (total + count, [*reasons, reason])
        return sorted(((rule, n, reasons) for rule, (n, reasons) in grouped.items()), key=lambda r: -r[1])


def is_utf8(encoding: str) -> bool:
    """Whether ``encoding`` is UTF-8, by any of Python's names for it (a byte order mark
    or not); ``LookupError`` when Python knows no such encoding."""
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


@contextmanager
def utf8_copy(path: Path, encoding: str) -> Iterator[Path]:
    """The file as UTF-8, which an import reads: the file itself when ``encoding`` is
    UTF-8, else a copy of it converted from ``encoding`` (GB18030, say, in which Excel
    saves a CSV file on Chinese Windows), in a temporary directory, under the same name
    (its extension still tells the format), gone after the block. A byte ``encoding``
    cannot read stays as it was: its event is refused as not UTF-8, like any other.
    ``LookupError`` when Python knows no such encoding."""
    if is_utf8(encoding):
        yield path
        return
    decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
    with tempfile.TemporaryDirectory(prefix="tongcha-import-") as tmp:
        copy = Path(tmp) / path.name
        with path.open("rb") as source, copy.open("wb") as utf8:
            for block in iter(lambda: source.read(_FEED_BYTES), b""):
                utf8.write(decoder.decode(block).encode("utf-8", "surrogateescape"))
            utf8.write(decoder.decode(b"", final=True).encode("utf-8", "surrogateescape"))
        yield copy


def looks_utf8(path: Path) -> bool:
    """Whether the file's first MiB reads as UTF-8 (a character cut at its end aside)."""
    with path.open("rb") as raw:
        head = raw.read(1 << 20)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def read_events(path: Path, raw: IO[bytes]) -> Iterator[Any]:
    """The file's events for ``EventParser.parse``: of NDJSON, its numbered lines, which
    the parser decodes; of CSV, its rows."""
    if _format_of(path, raw) == "ndjson":
        return numbered_lines(raw)
    return _csv_rows(raw)


def _format_of(path: Path, raw: IO[bytes]) -> str:
    """ "ndjson" or "csv", by the file's name or its first bytes; ``raw`` is left at the start."""
    head = raw.read(4096)
    raw.seek(0)
    return sniff_format(str(path), head)


def _readable(rejection: dict[str, str | None]) -> dict[str, str | None]:
    """A CSV's bytes that are not UTF-8 (read with surrogateescape) as ``\\xff`` text, and
    a lone surrogate an NDJSON line escaped as ``\\ud800`` text, so the rejects file stays
    UTF-8 JSON and still shows which event id it was."""
    return {k: _readable_text(v) if v is not None else v for k, v in rejection.items()}


def _readable_text(text: str) -> str:
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _csv_rows(raw: IO[bytes]) -> Iterator[Any]:
    """A CSV file's events for one job: plain lines (``_csv_pieces``) for the parser to
    read, and rows, made events (``parse.csv_events``)."""
    for piece in _csv_pieces(raw):
        if isinstance(piece, _PlainLines):
            yield from _plain_items(
                range(piece.lineno, piece.lineno + piece.block.count(b"\n")), piece.block, piece.shape
            )
        else:
            yield from _csv_events(piece)


def _csv_events(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        yield item if isinstance(item, Rejection) else csv_event(*item)


def _plain_items(linenos: Iterable[int], lines: bytes, shape: CsvShape) -> Iterator[tuple[int, bytes, CsvShape]]:
    """Plain CSV lines, each ending in a newline, as the parser reads them (in C, most
    of them) with the file's shape: each with its number in the file, blank ones left out."""
    for lineno, line in zip(linenos, lines.split(b"\n"), strict=False):  # the last split is empty
        if line and line != b"\r":  # a blank line is no row
            yield lineno, line, shape


def _csv_records(raw: IO[bytes]) -> Iterator[Any]:
    """A CSV file's rows (``parse.csv_rows``), read from its bytes."""
    # utf-8-sig: a byte order mark at the start (as Excel saves UTF-8) is not header text.
    # surrogateescape: a byte that is not UTF-8 spoils its own row (the parser refuses
    # it), not the rest of the file.
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        yield from csv_rows(text)
    finally:
        # Let go of ``raw`` without closing it: the caller still reads its position.
        text.detach()


def import_jobs(settings: Settings, asked: int | None = None) -> int:
    """How many jobs an import runs: one on SQLite, which takes one writer at a time;
    on PostgreSQL as asked, or one per core up to ``MAX_JOBS``."""
    if not settings.database_url.startswith("postgresql"):
        return 1
    if asked is not None:
        return max(1, asked)
    # The cores this process may run on (a container's cpuset), not all the machine's.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_JOBS))


def import_file(
    settings: Settings,
    path: Path,
    carrier_code: str,
    progress: Callable[[int], None] = lambda _: None,
    rejects: Path | None = None,
    clock: Clock | None = None,
    jobs: int | None = None,
    totals: ImportTotals | None = None,
) -> ImportTotals:
    """Stream a file into the ledger, committing about every ``import_commit_events``
    events (a setting).

    The file is read and parsed on a thread of its own, ahead of the writes. Each commit
    is whole; a run cut short leaves whole commits behind, and running again counts them
    as duplicates and goes on. With more than one job (``import_jobs``) each job is a
    process of its own that imports the events of its share of the numbers, beside the
    others. ``ImportFailed`` says when the file or the database failed on the way, and
    ``KeyboardInterrupt`` (Ctrl+C) stops the jobs too. ``totals`` counts the commits as
    they land, so a caller that passes its own still has them when the import stops early.
    """
    clock = clock or SystemClock()
    jobs = import_jobs(settings, jobs)
    totals = totals if totals is not None else ImportTotals()
    reject_out = rejects.open("w", encoding="utf-8") if rejects else None

    def committed(result: Committed) -> None:
        totals.accepted += result.accepted
        totals.duplicates += result.duplicates
        totals.rejected += len(result.rejected)
        for rej in result.rejected:
            totals.refused(rej.rule, rej.reason)
            if reject_out is not None:
                reject_out.write(json.dumps(_readable(rej.as_dict()), ensure_ascii=False) + "\n")

    try:
        if jobs > 1:
            _import_in_jobs(settings, path, carrier_code, clock, jobs, committed, progress)
            return totals
        engine = make_engine(settings.database_url)
        try:
            with path.open("rb") as raw:
                for result in _import_events(engine, settings, carrier_code, clock, read_events(path, raw)):
                    committed(result)
                    progress(raw.tell())
        except _STOPPING as exc:
            raise ImportFailed(_stopped(_trouble(exc))) from exc
        finally:
            engine.dispose()
    finally:
        if reject_out is not None:
            reject_out.close()
    return totals


@dataclass(slots=True)
class Committed:
    """What one commit of an import did."""

    accepted: int
    duplicates: int
    rejected: list[Rejection]


def _import_events(
    engine: Engine,
    settings: Settings,
    carrier_code: str,
    clock: Clock,
    raw_events: Iterable[Any],
    partitions: list[int] | None = None,
    parser: EventParser | None = None,
) -> Iterator[Committed]:
    """Parse and write raw events, one whole commit about every ``import_commit_events``,
    with ``parser`` when the caller has one for the carrier."""
    sessions = make_sessionmaker(engine)
    per_commit = max(1, settings.import_commit_events // settings.ingest_chunk_size)
    if parser is None:
        with sessions() as session:
            parser = service.parser_for(session, _carrier(session, carrier_code), clock=clock, settings=settings)
    with _collect_per_commit() as collect:
        stream = service.ParsedStream(raw_events, parser, settings.ingest_chunk_size)
        chunks = iter(stream)
        try:
            while (first := next(chunks, None)) is not None:
                batch = _Taken(first, islice(chunks, per_commit - 1))
                result = _commit(sessions, carrier_code, batch, clock, settings, partitions)
                stream.settled(batch.taken, {r.event_id for r in result.rejected})
                # The commit's events go before the collection, which would go over them all.
                del batch, first
                collect()
                yield Committed(result.accepted, result.duplicates, result.rejected)
        finally:
            stream.close()


class _Taken:
    """A commit's chunks, taken from the stream as its writes ask for them, and kept: a
    commit written again (``_commit``) writes the same chunks.

    Its writes start once its first chunk is parsed. When a commit waited for all its
    chunks first, an import's database sat idle for its first 0.7 s of 3.5
    (docs/benchmarks.md §1, thirteenth pass)."""

    def __init__(self, first: service.ParsedChunk, rest: Iterator[service.ParsedChunk]) -> None:
        self._taken = [first]
        self._rest = rest

    @property
    def taken(self) -> list[service.ParsedChunk]:
        """The chunks taken so far."""
        return self._taken

    def __iter__(self) -> Iterator[service.ParsedChunk]:
        at = 0
        while True:
            if at == len(self._taken):
                chunk = next(self._rest, None)
                if chunk is None:
                    return
                self._taken.append(chunk)
            yield self._taken[at]
            at += 1


_CONFLICTS = ("23505", "40P01")  # unique_violation, deadlock_detected
_DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, *DRIVER_ERRORS)
# What stops an import with a message rather than a traceback.
_STOPPING: tuple[type[Exception], ...] = (*_DATABASE_ERRORS, OSError)


def _commit(
    sessions: sessionmaker[Session],
    carrier_code: str,
    batch: Iterable[service.ParsedChunk],
    clock: Clock,
    settings: Settings,
    partitions: list[int] | None,
) -> service.IngestResult:
    # Jobs write disjoint numbers, but a file may give one event id to two numbers of two
    # jobs' shares: the second job to write it meets the first's row and writes its
    # commit again, which then finds the id held and counts the event a duplicate.
    for attempt in range(3):
        try:
            with sessions() as session, session.begin():
                return service.ingest_parsed(
                    session,
                    _carrier(session, carrier_code),
                    batch,
                    clock=clock,
                    settings=settings,
                    source="import",
                    partitions=partitions,
                )
        except _DATABASE_ERRORS as exc:
            if partitions is None or attempt == 2 or sqlstate(exc) not in _CONFLICTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# ----- parallel import ----------------------------------------------------------------

MAX_JOBS = 8
# The text after an NDJSON line's number key, when the number is written the plain way:
# its job can be told without decoding the line (``phone.PLAIN_NUMBER``, for the bytes).
_NUMBER_VALUE = re.compile(rb'\s*:\s*"(?:\+86)?(1[0-9]{10})"')


class ImportFailed(RuntimeError):
    """An import could not go on (the file or the database failed); its commits are kept."""


def _job_of(number: int, jobs: int) -> int:
    return ledger_partition(number) % jobs


def _job_of_event(item: Any, jobs: int) -> int:
    """The job of a decoded event: its number's, or job 0 for one with no number to go by
    (and for a line that is not an event), so that its refusal is reported once."""
    number = _routing_number(item.get("number")) if isinstance(item, dict) else None
    return 0 if number is None else _job_of(number, jobs)


def _job_of_row(item: Any, jobs: int) -> int:
    """The job of a CSV row (``parse.csv_rows``), as ``_job_of_event`` tells its event's."""
    if isinstance(item, Rejection):
        return 0
    index, row = item
    number = _routing_number(row[index["number"]])
    return 0 if number is None else _job_of(number, jobs)


@dataclass(frozen=True)
class Share:
    """One job's part of a parallel import: the numbers of some ledger partitions.

    An event belongs to the job of its number, so a number's events all meet in one job
    and are judged together as one job would judge them."""

    job: int
    jobs: int

    @property
    def partitions(self) -> list[int]:
        return [p for p in range(LEDGER_PARTITIONS) if p % self.jobs == self.job]


def _number_in_text(line: bytes) -> int | None:
    """An NDJSON line's number, when its text says it for certain.

    That is when the line has no escapes (so no key is written in another way, and every
    quote opens or closes a string) and one ``"number"``, a key of the outermost object
    (one brace and no bracket before it, strings included) with a plain value: the
    decoded event's number is then that text, or the line is not JSON at all (and its
    refusal is that job's). Plain searches and slices: this runs on every line of the
    file, and a regular expression over the line cost more than decoding it."""
    at = line.find(b'"number"')
    if at < 0 or b"\\" in line or line.find(b'"number"', at + 8) >= 0:
        return None
    head = line[:at]
    if head.count(b"{") != 1 or b"}" in head or b"[" in head:
        return None
    start = at + 10
    if line[at + 8 : start] != b':"':  # spaced out: the slower way
        value = _NUMBER_VALUE.match(line, at + 8)
        return int(value.group(1)) if value is not None else None
    if line[start : start + 3] == b"+86":
        start += 3
    digits = line[start : start + 11]
    if len(digits) == 11 and digits.isdigit() and digits[0] == 0x31 and line[start + 11 : start + 12] == b'"':
        return int(digits)
    return None


def _routing_number(value: object) -> int | None:
    """The number an event's job is told by: its national number where it is written the
    plain way (``phone.PLAIN_NUMBER``), else as ``parse_mobile`` reads it, else None."""
    if isinstance(value, str):
        national = value[3:]
        # +86 and 11 ASCII digits from 1, the common way, told without the pattern: the
        # importing process tells every CSV row's job.
        if len(value) == 14 and value[:4] == "+861" and national.isascii() and national.isdigit():
            return int(national)
        if (shaped := PLAIN_NUMBER.fullmatch(value)) is not None:
            return int(shaped.group(1))
    try:
        return parse_mobile(value)
    except InvalidNumber:
        return None


def _import_in_jobs(
    settings: Settings,
    path: Path,
    carrier_code: str,
    clock: Clock,
    jobs: int,
    committed: Callable[[Committed], None],
    progress: Callable[[int], None],
) -> None:
    """Run the jobs and gather what they commit.

    The file is read once, here, on a thread that sends each job its share (``_feed``):
    an NDJSON file's lines, which the job decodes, or a CSV file's rows, which a field
    in quotes may run over several lines, as the csv module reads them."""
    engine = make_engine(settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            carrier = _carrier(session, carrier_code)  # an unknown carrier is said before any job starts
            # Each forked job starts with a copy of this parser, its tables made: a job
            # made its own, about 0.15 s of its CPU, after its first queries, while the
            # database waited for its first events (docs/benchmarks.md §1, thirteenth pass).
            parser = service.parser_for(session, carrier, clock=clock, settings=settings)
            parser.prepare()
    finally:
        engine.dispose()
    with path.open("rb") as raw:
        ndjson = _format_of(path, raw) == "ndjson"
    # fork: a job starts in milliseconds with the modules already loaded, where a fresh
    # interpreter would take most of a second to import them.
    context = multiprocessing.get_context("fork")
    procs: list[BaseProcess] = []
    live: dict[Connection, int] = {}
    feeds: list[Connection] = []
    fed = [0]
    feeder_failed: list[str] = []
    feeder: threading.Thread | None = None
    failure: str | None = None
    ended = False
    try:
        for job in range(jobs):
            receive, send = context.Pipe(duplex=False)
            share_in, share_out = context.Pipe(duplex=False)
            started = context.Process(
                target=_job,
                args=(settings, carrier_code, clock, Share(job, jobs), ndjson, send, share_in, parser),
                name=f"tongcha-import-{job}",
                daemon=True,
            )
            started.start()
            send.close()
            share_in.close()  # so that a job that dies breaks the feeder's pipe to it
            feeds.append(share_out)
            procs.append(started)
            live[receive] = job
        feeder = threading.Thread(
            target=_feed, args=(path, ndjson, feeds, fed, feeder_failed), name="tongcha-import-feed", daemon=True
        )
        feeder.start()
        while live and failure is None:
            for ready in wait(list(live)):
                conn = cast(Connection, ready)
                job = live.pop(conn)
                try:
                    message: tuple[Any, ...] = conn.recv()
                except EOFError:
                    procs[job].join()
                    failure = f"import job {job} ended with exit code {procs[job].exitcode}"
                    break
                if message[0] == "commit":
                    live[conn] = job
                    committed(message[1])
                    progress(fed[0])
                elif message[0] == "failed":
                    failure = message[1]
                    break
                # "done", or "stopped" with the rest: the cause, if any, is heard elsewhere
        ended = failure is None
    finally:
        for proc in procs:
            if not ended and proc.is_alive():  # a job failed, or this process was interrupted
                proc.terminate()  # its open transaction is rolled back
            proc.join()
        if feeder is not None:
            feeder.join()  # its pipes are broken or done with by now
        for conn in live:  # commits the jobs made before they were stopped, still unheard
            _heard_commits(conn, committed)
    if feeder_failed:  # the file could not be read: what the jobs said of it comes after
        raise ImportFailed(_stopped(feeder_failed[0]))
    if failure is not None:
        raise ImportFailed(_stopped(failure))


def _heard_commits(conn: Connection, committed: Callable[[Committed], None]) -> None:
    """Count the commits a stopped job reported and nobody read: they are in the ledger."""
    try:
        while conn.poll():
            message = conn.recv()
            if message[0] == "commit":
                committed(message[1])
    except (EOFError, OSError):  # the job was stopped while it reported something
        pass


_FEED_BATCH = 2_000  # CSV rows a message
_FEED_BYTES = 1 << 19  # of an NDJSON file, read and shared out at a time (whole lines)
# Sent to the jobs instead of the end when the file cannot be read or a job has ended.
_STOP = "stop"


class _Stopped(Exception):
    """A job told to stop with the rest of the import."""


def _feed(path: Path, ndjson: bool, outs: list[Connection], fed: list[int], failed: list[str]) -> None:
    """Read the file once and send each job its share: of an NDJSON file, its lines in a
    block of bytes with their line numbers, which the job splits and decodes; of a CSV
    file, rows as the csv module reads them.

    Runs on a thread of the importing process, beside the jobs."""
    end: str | None = None
    try:
        with path.open("rb") as raw:
            if ndjson:
                _feed_lines(raw, outs, fed)
            else:
                _feed_rows(raw, outs, fed)
        fed[0] = path.stat().st_size
    except BrokenPipeError:
        end = _STOP  # a job has ended early; the importing process hears why from the job
    except Exception as exc:
        failed.append(_trouble(exc))
        end = _STOP
    finally:
        for out in outs:
            with contextlib.suppress(OSError):
                out.send(end)
            out.close()


def _feed_lines(raw: IO[bytes], outs: list[Connection], fed: list[int]) -> None:
    for first_lineno, block in _ndjson_blocks(raw):
        for job, share in enumerate(_line_shares(block, first_lineno, len(outs))):
            if share is not None:
                outs[job].send(share)
        fed[0] = raw.tell()


def _feed_rows(raw: IO[bytes], outs: list[Connection], fed: list[int]) -> None:
    """A CSV file's share for each job: of its plain lines (``_csv_pieces``), each job's
    lines of a block as bytes, as an NDJSON file's go, each line's job told in C
    (``_native.csv_line_jobs``); of the rest, rows as the csv module reads them.
    Reading every row with the csv module and sending them pickled took the importing
    process four times the CPU of an NDJSON file's (docs/benchmarks.md §1, thirteenth
    pass)."""
    for piece in _csv_pieces(raw):
        if not isinstance(piece, _PlainLines):
            _feed_csv_rows(piece, outs, fed, raw)
            continue
        index, width, _ = piece.shape
        for job, share in enumerate(_csv_line_shares(piece.block, piece.lineno, index, width, len(outs))):
            if share is not None:
                outs[job].send((piece.shape, *share))
        fed[0] = piece.end


@dataclass(frozen=True, slots=True)
class _PlainLines:
    """A block of a CSV file's plain lines (``_plain_lines``), each ending in a newline:
    the number of its first line, and the offset in the file where it ends."""

    block: bytes
    lineno: int
    end: int
    shape: CsvShape


def _csv_pieces(raw: IO[bytes]) -> Iterator[_PlainLines | Iterator[CsvRow | Rejection]]:
    """A CSV file, ``raw`` at its start, in pieces: blocks of lines that are plain
    (``parse.csv_plain_row``: no field running over two lines, so a line is a row, and a
    quote only around a whole field), which C reads; the rows of a block that is not, as
    the csv module reads them; and, from the first block whose last field runs on past
    it (or holding a line the csv module refuses), the rest of the file's rows as the
    csv module reads them, a last piece that must be read through before the next is
    asked for. A file with a quote inside a field near its start went the slow way from
    there to its end (docs/benchmarks.md §1, fifteenth pass)."""
    first = raw.readline(csv.field_size_limit() + 8)  # a header longer goes the csv module's way
    head = first.removeprefix(codecs.BOM_UTF8)
    if not head.endswith(b"\n") or not _plain_lines(head):
        raw.seek(0)
        yield _csv_records(raw)
        return
    header = next(csv.reader([head.decode("utf-8", "surrogateescape")]), [])
    shape = csv_header(header)
    if isinstance(shape, Rejection):
        yield iter([shape])
        return
    index, width = shape
    plain = csv_shape(index, width)
    lineno = 2  # the file's line after the header
    offset = raw.tell()
    for block in whole_lines(iter(lambda: raw.read(_FEED_BYTES), b""), _FEED_BYTES):
        if _plain_lines(block):
            offset += len(block)
            yield _PlainLines(block, lineno, offset, plain)
            lineno += block.count(b"\n")
            continue
        rows = _BlockRows(block)
        read = list(csv_records(rows, index, width, lineno - 1))
        if not rows.whole:
            # The csv module reads on from this block's first line, a row's first.
            raw.seek(offset)
            text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
            try:
                yield csv_records(csv.reader(text), index, width, lineno - 1)
            finally:
                text.detach()
            return
        offset += len(block)
        yield iter(read)
        lineno += rows.lines


class _BlockRows:
    """A block's rows as the csv module reads them (a csv reader, for ``csv_records``),
    and whether the block holds them whole: its last row ends with it, and the csv
    module refused none of its lines. The file's reader would then start a row where
    the block ends, as the next block's reading does.

    Told by a mark after the block's text, on a line of its own: a lone high surrogate,
    which no text read with surrogateescape holds. It is read as a row of its own
    exactly when the block's last row has ended."""

    _MARK = "\ud800"

    def __init__(self, block: bytes) -> None:
        text = block.decode("utf-8", "surrogateescape") + self._MARK + "\n"
        self._reader = csv.reader(io.StringIO(text, newline=""))
        self.whole = False
        self.lines = 0  # the block's lines as the csv module counts them, once whole

    @property
    def line_num(self) -> int:
        return self._reader.line_num

    def __iter__(self) -> _BlockRows:
        return self

    def __next__(self) -> list[str]:
        try:
            row = next(self._reader)
        except csv.Error:
            raise StopIteration from None  # not whole: the file's reader takes it
        if row == [self._MARK]:
            self.whole = True
            self.lines = self._reader.line_num - 1
            raise StopIteration
        return row


def _plain_lines(block: bytes) -> bool:
    """Whether every line of ``block`` is plain (``parse.csv_plain_row``)."""
    return (
        (b'"' not in block or csv_simple(block))
        and block.count(b"\r") == block.count(b"\r\n")
        and max(map(len, block.split(b"\n"))) < csv.field_size_limit()
    )


def _csv_line_shares(
    block: bytes, first_lineno: int, index: dict[str, int], width: int, jobs: int
) -> list[LineShare | None]:
    """Each job's lines of a block of plain CSV lines, as ``_line_shares`` of NDJSON."""
    job, starts, ends = (np.empty(block.count(b"\n"), np.int64) for _ in range(3))
    csv_line_jobs(block, index["number"], width, jobs, LEDGER_PARTITIONS, job, starts, ends)
    for i in np.flatnonzero(job == _UNTOLD).tolist():
        row = csv_plain_row(index, width, first_lineno + i, block[starts[i] : ends[i] - 1])
        job[i] = _BLANK if row is None else _job_of_row(row, jobs)
    return _shares_by_runs(block, first_lineno, job, starts, ends, jobs)


def _feed_csv_rows(items: Iterable[Any], outs: list[Connection], fed: list[int], raw: IO[bytes]) -> None:
    # Rows as the csv module reads them, each made an event by its job: building the
    # events here took the importing process twice the time the reading takes.
    batches: list[list[Any]] = [[] for _ in outs]
    for item in items:
        job = _job_of_row(item, len(outs))
        batch = batches[job]
        batch.append(item)
        if len(batch) >= _FEED_BATCH:
            outs[job].send(batch)
            batches[job] = []
            fed[0] = raw.tell()
    for job, batch in enumerate(batches):
        if batch:
            outs[job].send(batch)


def _ndjson_blocks(raw: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """The file in blocks of whole lines, each ending in a newline, with the number of
    each block's first line; a byte order mark at the start left out."""
    lineno = 1
    for block in split_blocks(iter(lambda: raw.read(_FEED_BYTES), b""), _FEED_BYTES):
        yield lineno, block
        lineno += block.count(b"\n")


# A job's share of a block: the numbers of its lines in the file, and those lines, each
# ending in a newline.
LineShare = tuple[npt.NDArray[np.int64], bytes]


def _line_shares(block: bytes, first_lineno: int, jobs: int) -> list[LineShare | None]:
    """Each job's non-blank lines of ``block`` (whole lines, each ending in a newline).

    A line's job is told from its text, as ``_number_in_text`` tells it, for all the
    lines of the block at once: that is most of them, and one line at a time it cost the
    importing process more than decoding it costs a job. The rest are told one by one,
    the same way or by decoding them."""
    job, starts, ends = _line_jobs(block, jobs)
    for i in np.flatnonzero(job == _UNTOLD).tolist():
        line = block[starts[i] : ends[i]]
        if not line.strip():
            job[i] = _BLANK
        elif (number := _number_in_text(line)) is not None:
            job[i] = _job_of(number, jobs)
        else:
            job[i] = _job_of_event(next(ndjson_numbered([(first_lineno + i, line)])), jobs)
    return _shares_by_runs(block, first_lineno, job, starts, ends, jobs)


def _shares_by_runs(
    block: bytes,
    first_lineno: int,
    job: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    jobs: int,
) -> list[LineShare | None]:
    """Each job's lines of ``block``, its ``job`` of each line told (a blank one's none)."""
    # A job's lines lie in runs (a number's events are often written together): slice
    # the block by runs, not by lines.
    runs = np.flatnonzero(np.diff(job, prepend=_UNTOLD)).tolist()
    pieces: list[list[bytes]] = [[] for _ in range(jobs)]
    for at, until in zip(runs, [*runs[1:], len(job)], strict=True):
        owner = int(job[at])
        if owner >= 0:
            pieces[owner].append(block[starts[at] : ends[until - 1]])
    return [
        (np.flatnonzero(job == owner) + first_lineno, b"".join(owned)) if owned else None
        for owner, owned in enumerate(pieces)
    ]


_UNTOLD, _BLANK = -1, -2


def _line_jobs(block: bytes, jobs: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Where each line of ``block`` starts and ends, and its job where its text says its
    number for certain (``_UNTOLD`` elsewhere): ``_number_in_text``'s plain way, made in
    C for the whole block (``_native.line_jobs``). Done with numpy over the block, it was
    most of the importing process's CPU (docs/benchmarks.md §1, thirteenth pass)."""
    lines = block.count(b"\n")
    job, starts, ends = (np.empty(lines, np.int64) for _ in range(3))
    line_jobs(block, jobs, LEDGER_PARTITIONS, job, starts, ends)
    return job, starts, ends


def _fed(feed: Connection) -> Iterator[Any]:
    """What the feeder sends a job, until it says the file is done."""
    while (message := feed.recv()) is not None:
        if message == _STOP:
            raise _Stopped
        yield message


def _fed_rows(feed: Connection) -> Iterator[Any]:
    """A job's CSV events: plain lines (``_feed_rows``) for the parser to read, and rows, made events."""
    for message in _fed(feed):
        if isinstance(message, tuple):
            shape, linenos, lines = message
            yield from _plain_items(linenos.tolist(), lines, shape)
        else:
            yield from _csv_events(message)


def _fed_lines(feed: Connection) -> Iterator[tuple[int, bytes]]:
    for linenos, lines in _fed(feed):
        yield from zip(linenos.tolist(), lines.split(b"\n"), strict=False)  # the last split is empty


def _trouble(exc: BaseException) -> str:
    """What stopped an import, in one line (no SQL, no parameters: no event's data)."""
    if isinstance(exc, _DATABASE_ERRORS):
        return database_trouble(exc)
    return f"{type(exc).__name__}: {exc}"


def _stopped(trouble: str) -> str:
    return f"the import stopped: {trouble}; what was committed is kept, and running it again goes on"


def _job(
    settings: Settings,
    carrier_code: str,
    clock: Clock,
    share: Share,
    ndjson: bool,
    out: Connection,
    feed: Connection,
    parser: EventParser,
) -> None:
    """One job of a parallel import, in a process of its own: reports each commit. Its
    ``parser`` is the importing process's, copied by the fork."""
    # Ctrl+C reaches every process of the terminal's group. The importing process stops
    # the jobs itself, so that none reports the interrupt as its own failure first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        engine = make_engine(settings.database_url)
        try:
            events = _fed_lines(feed) if ndjson else _fed_rows(feed)
            for result in _import_events(engine, settings, carrier_code, clock, events, share.partitions, parser):
                out.send(("commit", result))
        finally:
            engine.dispose()
        out.send(("done",))
    except _Stopped:
        out.send(("stopped",))
    except BaseException as exc:
        out.send(("failed", _trouble(exc)))
    finally:
        out.close()


@contextmanager
def _collect_per_commit() -> Iterator[Callable[[], int]]:
    """Collect garbage once per commit, not whenever enough objects have piled up.

    An import makes and drops millions of small objects, and the collector's automatic
    passes over everything alive took about a fifth of it (docs/benchmarks.md §1). For
    the import, the objects alive before it are set aside (frozen) and the automatic
    passes stop; whatever reference cycles a commit leaves behind are collected after
    that commit.
    """
    enabled = gc.isenabled()
    gc.freeze()
    gc.disable()
    try:
        yield lambda: gc.collect(1)
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def _carrier(session: Session, code: str) -> Carrier:
    carrier = repo.carrier_by_code(session, code)
    if carrier is None:
        raise LookupError(f"no carrier with code {code!r}; add it with `tongcha carrier add`")
    return carrier


def check_file(
    settings: Settings, path: Path, sink: IO[bytes], platform_code: str | None, clock: Clock | None = None
) -> BatchStats:
    """Answer a batch file against the ledger and record every check in the log."""
    clock = clock or SystemClock()
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        with sessions() as session:
            platform_id = None
            if platform_code is not None:
                platform = find_by_code(session, Platform, platform_code)
                if platform is None:
                    raise LookupError(f"no platform with code {platform_code!r}")
                platform_id = platform.id
        index = ledger_index.load(engine)
        with path.open("rb") as raw:
            fmt = _format_of(path, raw)
        checker = BatchChecker(index, service.today_in(settings, clock), fmt)
        log = CheckLog(engine, Digester.from_settings(settings))
        receipts = Receipts(log)
        with sessions() as session, session.begin():
            batch_id = repo.new_batch(session, platform_id, clock.now()).id
        try:
            with path.open("rb") as raw:
                for block in checker.run(iter(lambda: raw.read(1 << 20), b"")):
                    # On record before they are written out, even if the run is cut short
                    # (Ctrl+C) right after.
                    receipts.record_checked(checker.blocks, platform_id, batch_id, clock.now())
                    sink.write(block)
            receipts.check(wait=True)
        finally:
            log.close()
        with sessions() as session, session.begin():
            batch = session.get(ReassignmentBatch, batch_id)
            if batch is not None:
                batch.rows = checker.stats.rows
                batch.invalid_rows = checker.stats.invalid
        return checker.stats
    finally:
        engine.dispose()
