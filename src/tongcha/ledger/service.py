"""Ledger rules at the edge of the database: ingest events, answer reassignment checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from tongcha.kit.clock import Clock
from tongcha.kit.db import ledger_write_lock
from tongcha.kit.digests import Digester
from tongcha.kit.errors import InvalidArgument, OutOfRange
from tongcha.kit.phone import e164
from tongcha.kit.settings import Settings
from tongcha.ledger import repository as repo
from tongcha.ledger.models import Carrier
from tongcha.ledger.parse import EventParser, Rejection
from tongcha.ledger.replay import Event, NumberState, replay


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
            "rejected": [r.as_dict() for r in self.rejected],
            "revision": self.revision,
        }


def ingest(
    session: Session,
    carrier: Carrier,
    raw_events: Iterable[Any],
    *,
    clock: Clock,
    settings: Settings,
    source: str,
    on_chunk: Callable[[int], None] | None = None,
) -> IngestResult:
    """Apply a batch of raw carrier events; flushes, never commits.

    Each event is accepted, counted as a duplicate of one already held, or rejected with
    a code and reason; the batch is processed in chunks so it may be any size.
    """
    now = clock.now()
    carriers = repo.carriers(session)
    quarantine = {c.id: c.quarantine_days for c in carriers}
    parser = EventParser(
        carrier.id,
        {c.code: c.id for c in carriers},
        Digester.from_settings(settings),
        ZoneInfo(settings.timezone),
        now,
        timedelta(seconds=settings.clock_skew_seconds),
    )
    result = IngestResult()
    seen: set[str] = set()
    with ledger_write_lock(session):
        revision = repo.new_revision(session, carrier.id, source, now)
        result.revision = revision.id
        iterator = iter(raw_events)
        while chunk := list(islice(iterator, settings.ingest_chunk_size)):
            _ingest_chunk(session, carrier.id, chunk, parser, quarantine, seen, result, revision.id)
            if on_chunk is not None:
                on_chunk(len(chunk))
        revision.accepted = result.accepted
        revision.duplicates = result.duplicates
        revision.rejected = len(result.rejected)
        session.flush()
    return result


def _ingest_chunk(
    session: Session,
    carrier_id: int,
    chunk: list[Any],
    parser: EventParser,
    quarantine: dict[int, int],
    seen: set[str],
    result: IngestResult,
    revision: int,
) -> None:
    parsed: list[Event] = []
    rejected: list[Rejection] = []
    for raw in chunk:
        item = parser.parse(raw)
        if isinstance(item, Rejection):
            rejected.append(item)
        elif item.event_id in seen:
            result.duplicates += 1
        else:
            seen.add(item.event_id)
            parsed.append(item)
    held = repo.existing_event_ids(session, carrier_id, [e.event_id for e in parsed])
    result.duplicates += len(held)
    by_number: dict[int, list[Event]] = {}
    for event in parsed:
        if event.event_id not in held:
            by_number.setdefault(event.number, []).append(event)
    existing = repo.events_of(session, list(by_number))
    accepted: list[Event] = []
    states: list[NumberState] = []
    days = quarantine.get
    for number, new in by_number.items():
        outcome = replay(number, existing.get(number, ()), new, lambda c: days(c, 90))
        accepted.extend(outcome.accepted)
        rejected.extend(Rejection(e.event_id, err.code, err.rule, err.reason) for e, err in outcome.rejected)
        if outcome.accepted:
            states.append(outcome.state)
    repo.add_events(session, accepted, revision)
    repo.replace_states(session, states, {s.number for s in states if s.number in existing}, revision)
    repo.add_rejections(session, carrier_id, rejected, revision)
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


def parse_since(raw: str | None, today: date) -> date:
    if raw is None or raw == "":
        raise InvalidArgument("since is required: a date like 2024-01-31")
    try:
        since = date.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument("since must be an RFC 3339 full-date like 2024-01-31") from None
    if len(raw) != 10:
        raise InvalidArgument("since must be an RFC 3339 full-date like 2024-01-31")
    if since > today:
        raise OutOfRange("since is in the future")
    return since


def camara_recycled(ans: Answer) -> bool:
    if ans.result == "no_data":
        raise OutOfRange("the ledger has no records of this number on the specified date")
    return ans.result == "yes"


def today_in(settings: Settings, clock: Clock) -> date:
    return clock.now().astimezone(ZoneInfo(settings.timezone)).date()
