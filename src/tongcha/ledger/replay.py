"""The ledger's rules, as a pure fold of one number's events into its tenures.

Nothing here touches the database: ``replay`` takes a number's events in any order and
returns its tenures and summary, with every event that contradicts the others refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum


class EventType(StrEnum):
    activated = "activated"
    cancelled = "cancelled"
    ported = "ported"
    transferred = "transferred"
    suspended = "suspended"
    resumed = "resumed"


# The members as plain module names: ``EventType.activated`` goes through the enum's
# descriptor on every access, which the fold below would pay several times per event.
ACTIVATED, CANCELLED, PORTED = EventType.activated, EventType.cancelled, EventType.ported
TRANSFERRED, SUSPENDED, RESUMED = EventType.transferred, EventType.suspended, EventType.resumed


@dataclass(slots=True)
class Event:
    """A well-formed event; identity already digested."""

    carrier_id: int
    event_id: str
    type: EventType
    number: int
    occurred_at: datetime
    day: date
    holder_digest: str | None = None
    kyc_digest: str | None = None
    tail_digest: str | None = None
    to_carrier_id: int | None = None
    # For events already in the ledger, their place in it (``ledger_place``); None for new ones.
    place: int | None = None
    arrival: int = 0


@dataclass(slots=True)
class TenureState:
    seq: int
    holder_digest: str
    kyc_digest: str
    tail_digest: str
    carrier_id: int
    started_on: date
    ended_on: date | None = None
    end_reason: str | None = None


@dataclass(slots=True)
class NumberState:
    number: int
    tenures: list[TenureState] = field(default_factory=list)
    carrier_id: int | None = None
    suspended: bool = False
    quarantine_until: date | None = None

    @property
    def open_tenure(self) -> TenureState | None:
        if self.tenures and self.tenures[-1].ended_on is None:
            return self.tenures[-1]
        return None

    @property
    def first_known_on(self) -> date | None:
        return self.tenures[0].started_on if self.tenures else None

    @property
    def open_since(self) -> date | None:
        tenure = self.open_tenure
        return tenure.started_on if tenure else None

    @property
    def last_change_on(self) -> date | None:
        if not self.tenures:
            return None
        last = self.tenures[-1]
        return last.ended_on or last.started_on


class Contradiction(Exception):
    """An event that cannot be true given the others."""

    def __init__(self, code: str, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.rule = rule
        self.reason = reason


def _serving(state: NumberState, event: Event, verb: str) -> TenureState:
    tenure = state.open_tenure
    if tenure is None:
        raise Contradiction("CONFLICT", "no_open_tenure", f"{verb} of a number nobody holds on {event.day}")
    if state.carrier_id != event.carrier_id:
        raise Contradiction(
            "PERMISSION_DENIED", "not_serving_carrier", f"{verb} from a carrier that does not serve the number"
        )
    return tenure


def _open_tenure(state: NumberState, event: Event) -> None:
    assert event.holder_digest and event.kyc_digest and event.tail_digest
    tenures = state.tenures
    # Positional: a call with keywords took half again as long, once per tenure.
    tenures.append(
        TenureState(
            len(tenures) + 1, event.holder_digest, event.kyc_digest, event.tail_digest, event.carrier_id, event.day
        )
    )


def apply(state: NumberState, event: Event, quarantine_days: Callable[[int], int]) -> None:
    """Apply one event to a number's state, or raise ``Contradiction`` and change nothing."""
    kind = event.type
    if kind is ACTIVATED:
        open_tenure = state.open_tenure
        if open_tenure is not None:
            raise Contradiction(
                "CONFLICT", "tenure_open", f"activation while a tenure is open since {open_tenure.started_on}"
            )
        if state.quarantine_until is not None and event.day < state.quarantine_until:
            raise Contradiction(
                "CONFLICT", "in_quarantine", f"activation inside quarantine, which lasts until {state.quarantine_until}"
            )
        _open_tenure(state, event)
        state.carrier_id = event.carrier_id
        state.suspended = False
        state.quarantine_until = None
    elif kind is CANCELLED:
        tenure = _serving(state, event, "cancellation")
        tenure.ended_on = event.day
        tenure.end_reason = "cancelled"
        state.suspended = False
        state.quarantine_until = event.day + timedelta(days=quarantine_days(event.carrier_id))
    elif kind is PORTED:
        tenure = _serving(state, event, "port")
        if event.to_carrier_id is None or event.to_carrier_id == event.carrier_id:
            raise Contradiction("INVALID_ARGUMENT", "bad_port", "a port needs to_carrier, another known carrier")
        state.carrier_id = event.to_carrier_id
        tenure.carrier_id = event.to_carrier_id
    elif kind is TRANSFERRED:
        tenure = _serving(state, event, "transfer")
        if tenure.holder_digest == event.holder_digest:
            raise Contradiction("CONFLICT", "same_holder", "transfer to the holder who already holds the number")
        tenure.ended_on = event.day
        tenure.end_reason = "transferred"
        _open_tenure(state, event)
        state.suspended = False
    elif kind is SUSPENDED:
        _serving(state, event, "suspension")
        if state.suspended:
            raise Contradiction("CONFLICT", "already_suspended", "suspension of a number already suspended")
        state.suspended = True
    elif kind is RESUMED:
        _serving(state, event, "resumption")
        if not state.suspended:
            raise Contradiction("CONFLICT", "not_suspended", "resumption of a number that is not suspended")
        state.suspended = False


def ledger_place(revision: int, position: int) -> int:
    """Where the ledger holds an event, as one number that orders its events as they were
    accepted: by revision, then by their position among the revision's events."""
    return (revision << 40) | position


def _order(event: Event) -> tuple[datetime, int, int]:
    # Existing events keep their place ahead of new ones stamped at the same instant.
    if event.place is not None:
        return (event.occurred_at, 0, event.place)
    return (event.occurred_at, 1, event.arrival)


def _fold(number: int, events: Sequence[Event], quarantine_days: Callable[[int], int]) -> NumberState:
    state = NumberState(number)
    for event in events:
        apply(state, event, quarantine_days)
    return state


@dataclass(slots=True)
class Replayed:
    state: NumberState
    accepted: list[Event]
    rejected: list[tuple[Event, Contradiction]]


def replay(
    number: int, existing: Sequence[Event], new: Sequence[Event], quarantine_days: Callable[[int], int]
) -> Replayed:
    """Fold existing and new events together in time order.

    Existing events were consistent before; a new event is accepted only if the whole
    history stays consistent with it. New events are tried in time order, so a batch that
    is internally consistent is accepted whole, whatever order it arrived in.
    """
    merged = sorted([*existing, *new] if existing else new, key=_order)
    try:
        return Replayed(_fold(number, merged, quarantine_days), list(new), [])
    except Contradiction:
        pass
    kept = sorted(existing, key=_order)
    accepted: list[Event] = []
    rejected: list[tuple[Event, Contradiction]] = []
    state = _fold(number, kept, quarantine_days)
    for candidate in sorted(new, key=_order):
        trial = sorted([*kept, candidate], key=_order)
        try:
            state = _fold(number, trial, quarantine_days)
        except Contradiction as exc:
            # Kept as a plain copy: the exceptions carry tracebacks whose frames hold this
            # fold and, up the stack, the caller's whole chunk, in reference cycles that
            # only the garbage collector would free.
            fault = _own_fault(number, trial, candidate, exc, quarantine_days)
            rejected.append((candidate, Contradiction(fault.code, fault.rule, fault.reason)))
            del fault
            continue
        kept = trial
        accepted.append(candidate)
    return Replayed(state, accepted, rejected)


def _own_fault(
    number: int, trial: list[Event], candidate: Event, err: Contradiction, quarantine_days: Callable[[int], int]
) -> Contradiction:
    """The candidate's own contradiction, or one saying it breaks a later event."""
    if _order(candidate) >= _order(trial[-1]):
        return err
    try:
        _fold(number, [e for e in trial if _order(e) <= _order(candidate)], quarantine_days)
    except Contradiction as own:
        return own
    return Contradiction("CONFLICT", "contradicts_later", f"contradicts a later event: {err.reason}")
