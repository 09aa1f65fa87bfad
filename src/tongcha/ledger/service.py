"""Ledger rules at the edge of the database: ingest events, answer reassignment checks."""

from __future__ import annotations

import queue
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tongcha.kit import jsonio
from tongcha.kit.clock import Clock
from tongcha.kit.db import broken_unique, is_postgres, ledger_partition, ledger_write_lock
from tongcha.kit.digests import Digester
from tongcha.kit.errors import InvalidArgument, OutOfRange
from tongcha.kit.phone import e164
from tongcha.kit.settings import Settings
from tongcha.ledger import repository as repo
from tongcha.ledger.models import Carrier
from tongcha.ledger.parse import EventParser, Rejection
from tongcha.ledger.replay import Contradiction, Event, NumberState, replay


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    revision: int = 0
    changed_numbers: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": [_answerable(r.as_dict()) for r in self.rejected],
            "revision": self.revision,
        }


def _answerable(rejection: dict[str, str | None]) -> dict[str, str | None]:
    # An event id with a lone surrogate (JSON may escape one: "\ud800") cannot be put in
    # a JSON answer that every client can read: the rejection says null instead.
    event_id = rejection["event_id"]
    return rejection if event_id is None or jsonio.is_utf8(event_id) else {**rejection, "event_id": None}


def parser_for(
    session: Session,
    carrier: Carrier,
    *,
    clock: Clock,
    settings: Settings,
    carriers: Sequence[Carrier] | None = None,
) -> EventParser:
    """A parser for ``carrier``'s events, knowing every carrier a port may name
    (``carriers``, when the caller has them already)."""
    return EventParser(
        carrier.id,
        {c.code: c.id for c in (repo.carriers(session) if carriers is None else carriers)},
        Digester.from_settings(settings),
        ZoneInfo(settings.timezone),
        clock.now(),
        timedelta(seconds=settings.clock_skew_seconds),
    )


@dataclass(slots=True)
class ParsedChunk:
    """Raw events turned into well-formed ones, with what could not be."""

    events: list[Event]
    rejected: list[Rejection]
    # Repeats of an event id met earlier in the same stream.
    duplicates: int


_END = object()


class ParsedStream:
    """Reads and parses raw events on a thread of its own, a few chunks ahead of the writer.

    Parsing is pure Python; the writer spends much of its time waiting on the database,
    with the interpreter lock released, and the next chunks are parsed meanwhile. Events
    come out in their input order. An error while reading (a broken file, say) is raised
    to the writer. ``close`` lets the thread go when the writer stops early.

    A repeat of an event id met earlier in the stream is counted a duplicate here. The
    ids are remembered until the writer says (``settled``) that their events are in the
    ledger, whose key tells a later repeat of them for the same duplicate: so what a
    long import remembers is bounded by what it has not yet committed, where keeping
    every id took some 130 bytes an event (docs/ledger.md).
    """

    def __init__(self, raw_events: Iterable[Any], parser: EventParser, chunk_size: int, ahead: int = 2) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        # Only the parse thread adds to it; ``settled`` discards from the writer's.
        self._seen: set[str] = set()
        self._thread = threading.Thread(
            target=self._run, args=(iter(raw_events), parser, chunk_size), name="tongcha-parse", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, raw: Iterator[Any], parser: EventParser, size: int) -> None:
        seen = self._seen
        try:
            while chunk := list(islice(raw, size)):
                parsed = ParsedChunk([], [], 0)
                at = 0
                while True:
                    # Most of a chunk in C; an item it leaves is parsed on its own.
                    at, duplicates = parser.parse_many(chunk, at, seen, parsed.events)
                    parsed.duplicates += duplicates
                    if at == len(chunk):
                        break
                    event = parser.parse(chunk[at])
                    at += 1
                    if isinstance(event, Rejection):
                        parsed.rejected.append(event)
                    elif event.event_id in seen:
                        parsed.duplicates += 1
                    else:
                        seen.add(event.event_id)
                        parsed.events.append(event)
                if not self._put(parsed):
                    return
        except BaseException as exc:  # handed to the writer, which raises it
            self._put(exc)
            return
        self._put(_END)

    def __iter__(self) -> Iterator[ParsedChunk]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def settled(self, chunks: Iterable[ParsedChunk], refused: Collection[str | None]) -> None:
        """Forget the ids of these chunks' events, now committed, but for those ``refused``:
        a refused event is in no table whose key would tell its repeat."""
        seen = self._seen
        for chunk in chunks:
            for event in chunk.events:
                if event.event_id not in refused:
                    seen.discard(event.event_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def carrier_among(session: Session, carrier_id: int) -> tuple[Carrier | None, list[Carrier]]:
    """The carrier of this id (None when there is none), and every carrier, which a
    port may name: one query for a carrier's post."""
    known = repo.carriers(session)
    return next((c for c in known if c.id == carrier_id), None), known


def ingest(
    session: Session,
    carrier: Carrier,
    raw_events: Iterable[Any],
    *,
    clock: Clock,
    settings: Settings,
    source: str,
    carriers: Sequence[Carrier] | None = None,
) -> IngestResult:
    """Apply a batch of raw carrier events; flushes, never commits.

    Each event is accepted, counted as a duplicate of one already held, or rejected with
    a code and reason; the batch is parsed and written in chunks so it may be any size.
    ``carriers`` is every carrier, when the caller has read them already.
    """
    known = repo.carriers(session) if carriers is None else carriers  # once: a batch may be a few events
    stream = ParsedStream(
        raw_events,
        parser_for(session, carrier, clock=clock, settings=settings, carriers=known),
        settings.ingest_chunk_size,
    )
    try:
        return ingest_parsed(session, carrier, stream, clock=clock, settings=settings, source=source, carriers=known)
    finally:
        stream.close()


def ingest_parsed(
    session: Session,
    carrier: Carrier,
    chunks: Iterable[ParsedChunk],
    *,
    clock: Clock,
    settings: Settings,
    source: str,
    partitions: Collection[int] | None = None,
    carriers: Sequence[Carrier] | None = None,
) -> IngestResult:
    """Write parsed chunks as one ledger revision; flushes, never commits.

    With ``partitions`` (a job of a parallel import) every event must be of a number in
    those ledger partitions, and other writers of other partitions may run meanwhile.
    ``carriers`` is every carrier, when the caller has read them already.
    A batch with no events at all writes nothing: its answer names the revision the
    ledger is at, which already holds everything the batch would have changed.
    """
    quarantine = {c.id: c.quarantine_days for c in (repo.carriers(session) if carriers is None else carriers)}
    result = IngestResult()
    owned = frozenset(partitions) if partitions is not None else None
    with ledger_write_lock(session, owned), repo.lookups_by_index(session) as by_index:
        revision: int | None = None
        for chunk in chunks:
            if owned is not None and any(ledger_partition(n) not in owned for n in {e.number for e in chunk.events}):
                raise ValueError("an event of a number outside this writer's ledger partitions")
            if len(chunk.events) > repo.PROBE_AT_MOST:
                by_index()
            if revision is None:
                revision = repo.new_revision(session, carrier.id, source, clock.now())
            _ingest_chunk(session, carrier.id, chunk, quarantine, result, revision)
        if revision is None:
            result.revision = repo.latest_revision(session)
            return result
        result.revision = revision
        repo.count_revision(session, revision, result.accepted, result.duplicates, len(result.rejected))
    return result


def _ingest_chunk(
    session: Session,
    carrier_id: int,
    chunk: ParsedChunk,
    quarantine: dict[int, int],
    result: IngestResult,
    revision: int,
) -> None:
    """Write one chunk's events, tenures and summaries.

    An event whose id the carrier's ledger holds already is a duplicate. On PostgreSQL a
    long chunk (an import's) is first written without looking its ids up: a repeat of
    an event of the same number is known from that number's stored events, which replay
    reads anyway, and an id held by another number (a carrier's mistake, or two numbers
    of two jobs given one id) breaks the events' primary key, which undoes the chunk to
    its savepoint; the chunk is then written again with its ids looked up. Looking up
    every chunk's ids took some 8% of an import's time (docs/benchmarks.md §1, twelfth
    pass)."""
    if len(chunk.events) > repo.PROBE_AT_MOST and is_postgres(session):
        try:
            with session.begin_nested():
                _write_chunk(session, carrier_id, chunk, quarantine, result, revision, look_up_ids=False)
            return
        except (IntegrityError, psycopg.IntegrityError) as exc:
            if broken_unique(exc) != "pk_ledger_events":
                raise
    _write_chunk(session, carrier_id, chunk, quarantine, result, revision, look_up_ids=True)


def _write_chunk(
    session: Session,
    carrier_id: int,
    chunk: ParsedChunk,
    quarantine: dict[int, int],
    result: IngestResult,
    revision: int,
    *,
    look_up_ids: bool,
) -> None:
    """``_ingest_chunk``'s writes; ``result`` counts them only once they are all made."""
    parsed, rejected = chunk.events, list(chunk.rejected)
    ids = [e.event_id for e in parsed]
    if look_up_ids:
        held = repo.existing_event_ids(session, carrier_id, ids)
        existing = repo.events_of(session, list(dict.fromkeys(e.number for e in parsed if e.event_id not in held)))
    else:
        # Repeats of the numbers' own events; an id held by another number is the primary
        # key's to find, or the lookup's below when replay refuses its event.
        existing = repo.events_of(session, list(dict.fromkeys(e.number for e in parsed)))
        listed = set(ids)
        held = {e.event_id for stored in existing.values() for e in stored if e.carrier_id == carrier_id}
        held &= listed
    by_number: dict[int, list[Event]] = {}
    for event in parsed:
        if event.event_id not in held:
            by_number.setdefault(event.number, []).append(event)
    accepted: list[Event] = []
    states: list[NumberState] = []
    refused: list[tuple[Event, Contradiction]] = []
    days = quarantine.get

    def quarantine_days(carrier_id: int) -> int:
        return days(carrier_id, 90)

    for number, new in by_number.items():
        outcome = replay(number, existing.get(number, ()), new, quarantine_days)
        accepted.extend(outcome.accepted)
        refused.extend(outcome.rejected)
        if outcome.accepted:
            states.append(outcome.state)
    if refused and not look_up_ids:
        # A refused event is written nowhere, so no key finds its id held: looked up here.
        elsewhere = repo.existing_event_ids(session, carrier_id, [e.event_id for e, _ in refused])
        held |= elsewhere
        refused = [(e, err) for e, err in refused if e.event_id not in elsewhere]
    rejected.extend(Rejection(e.event_id, err.code, err.rule, err.reason) for e, err in refused)
    repo.add_events(session, accepted, revision, result.accepted)
    repo.replace_states(session, states, {s.number for s in states if s.number in existing}, revision)
    repo.add_rejections(session, carrier_id, rejected, revision)
    result.duplicates += chunk.duplicates + len(held)
    result.accepted += len(accepted)
    result.rejected.extend(rejected)
    result.changed_numbers += len(states)


# ----- the reassignment check ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    number: int
    since: date
    result: str  # yes | no | no_data
    last_change_on: date | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": e164(self.number),
            "since": self.since.isoformat(),
            "result": self.result,
            "last_change_on": self.last_change_on.isoformat() if self.last_change_on else None,
        }


def answer(
    number: int, since: date, first_known_on: date | None, open_since: date | None, last_change_on: date | None
) -> Answer:
    """The one definition of the reassignment answer (API.md), used by every path.

    The tenure in force at the end of day ``since`` is the current one exactly when the
    number has an open tenure that started on or before that day.
    """
    if first_known_on is None or since < first_known_on:
        return Answer(number, since, "no_data", None)
    if open_since is not None and open_since <= since:
        return Answer(number, since, "no", last_change_on)
    return Answer(number, since, "yes", last_change_on)


def parse_since(raw: str | None, today: date, field: str = "since") -> date:
    """The day a check asks about; errors name ``field``, the caller's name for it."""
    if raw is None or raw == "":
        raise InvalidArgument(f"{field} is required: a date like 2024-01-31")
    try:
        since = date.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(f"{field} must be an RFC 3339 full-date like 2024-01-31") from None
    if len(raw) != 10:
        raise InvalidArgument(f"{field} must be an RFC 3339 full-date like 2024-01-31")
    if since > today:
        raise OutOfRange(f"{field} is in the future")
    return since


def camara_recycled(ans: Answer) -> bool:
    if ans.result == "no_data":
        raise OutOfRange("the ledger has no records of this number on the specified date")
    return ans.result == "yes"


def today_in(settings: Settings, clock: Clock) -> date:
    return clock.now().astimezone(ZoneInfo(settings.timezone)).date()
