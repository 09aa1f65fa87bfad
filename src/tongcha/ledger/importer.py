"""File-level ledger work for the command line: import events, check a batch."""

from __future__ import annotations

import gc
import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from tongcha.kit.clock import Clock, SystemClock
from tongcha.kit.db import find_by_code, make_engine, make_sessionmaker
from tongcha.kit.digests import Digester
from tongcha.kit.settings import Settings
from tongcha.ledger import index as ledger_index
from tongcha.ledger import repository as repo
from tongcha.ledger import service
from tongcha.ledger.batch import BatchChecker, BatchStats
from tongcha.ledger.models import Carrier, ReassignmentBatch
from tongcha.ledger.parse import csv_events, ndjson_events, sniff_format
from tongcha.ledger.tasks import BatchBlock, CheckLog, Receipts
from tongcha.platforms.models import Platform

COMMIT_EVERY = 100_000


@dataclass
class ImportTotals:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)


def read_events(path: Path, raw: IO[bytes]) -> Iterator[Any]:
    head = raw.read(4096)
    raw.seek(0)
    if sniff_format(str(path), head) == "ndjson":
        return ndjson_events(raw)
    return _csv_rows(raw)


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
    import io

    # utf-8-sig: a byte order mark at the start (as Excel saves UTF-8) is not header text.
    # surrogateescape: a byte that is not UTF-8 spoils its own row (the parser refuses
    # it), not the rest of the file.
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        yield from csv_events(text)
    finally:
        # Let go of ``raw`` without closing it: the caller still reads its position.
        text.detach()


def import_file(
    settings: Settings,
    path: Path,
    carrier_code: str,
    progress: Callable[[int], None] = lambda _: None,
    rejects: Path | None = None,
    clock: Clock | None = None,
) -> ImportTotals:
    """Stream a file into the ledger, committing about every ``COMMIT_EVERY`` events.

    The file is read and parsed on a thread of its own, ahead of the writes. Each commit
    is whole; a run cut short leaves whole chunks behind, and running again counts them
    as duplicates and goes on.
    """
    clock = clock or SystemClock()
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    totals = ImportTotals()
    per_commit = max(1, COMMIT_EVERY // settings.ingest_chunk_size)
    reject_out = rejects.open("w", encoding="utf-8") if rejects else None
    try:
        with sessions() as session:
            parser = service.parser_for(session, _carrier(session, carrier_code), clock=clock, settings=settings)
        with path.open("rb") as raw, _collect_per_commit() as collect:
            stream = service.ParsedStream(read_events(path, raw), parser, settings.ingest_chunk_size)
            chunks = iter(stream)
            try:
                while (first := next(chunks, None)) is not None:
                    with sessions() as session, session.begin():
                        result = service.ingest_parsed(
                            session,
                            _carrier(session, carrier_code),
                            chain([first], islice(chunks, per_commit - 1)),
                            clock=clock,
                            settings=settings,
                            source="import",
                        )
                    collect()
                    progress(raw.tell())
                    totals.accepted += result.accepted
                    totals.duplicates += result.duplicates
                    totals.rejected += len(result.rejected)
                    for rej in result.rejected:
                        totals.by_rule[f"{rej.rule}: {rej.reason}"] += 1
                        if reject_out is not None:
                            reject_out.write(json.dumps(_readable(rej.as_dict()), ensure_ascii=False) + "\n")
            finally:
                stream.close()
    finally:
        if reject_out is not None:
            reject_out.close()
        engine.dispose()
    return totals


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
            head = raw.read(4096)
        fmt = sniff_format(str(path), head)
        checker = BatchChecker(index, service.today_in(settings, clock), fmt)
        log = CheckLog(engine, Digester.from_settings(settings))
        receipts = Receipts(log)
        with sessions() as session, session.begin():
            batch_id = repo.new_batch(session, platform_id, clock.now()).id
        try:
            with path.open("rb") as raw:
                for block in checker.run(iter(lambda: raw.read(1 << 20), b"")):
                    sink.write(block)
                    for checked in checker.blocks:
                        receipts.record(
                            BatchBlock(
                                platform_id, batch_id, clock.now(), checked.numbers, checked.since_days, checked.results
                            )
                        )
                    checker.blocks.clear()
                    receipts.check()
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
