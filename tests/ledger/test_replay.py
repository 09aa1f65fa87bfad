"""The ledger's rules as a pure fold: tenures from events, whatever order they arrive in."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tongcha.ledger.replay import Event, EventType, NumberState, replay
from tongcha.ledger.service import answer

NUMBER = 13800138000
CMCC, CUCC, CTCC = 1, 2, 3
QUARANTINE = {CMCC: 90, CUCC: 90, CTCC: 30}


def quarantine(carrier_id: int) -> int:
    return QUARANTINE[carrier_id]


_seq = 0


def event(
    kind: str,
    day: date,
    *,
    carrier: int = CMCC,
    holder: str | None = None,
    to_carrier: int | None = None,
    hour: int = 2,
    place: int | None = None,
) -> Event:
    """An event at ``hour`` UTC on ``day`` (10:00 in Beijing for the default)."""
    global _seq
    _seq += 1
    return Event(
        carrier_id=carrier,
        event_id=f"e{_seq}",
        type=EventType(kind),
        number=NUMBER,
        occurred_at=datetime(day.year, day.month, day.day, hour, tzinfo=UTC),
        day=day,
        holder_digest=f"h:{holder}" if holder else None,
        kyc_digest=f"k:{holder}" if holder else None,
        tail_digest=f"t:{holder}" if holder else None,
        to_carrier_id=to_carrier,
        place=place,
        arrival=_seq,
    )


def spans(state: NumberState) -> list[tuple[str, int, date, date | None, str | None]]:
    return [(t.holder_digest, t.carrier_id, t.started_on, t.ended_on, t.end_reason) for t in state.tenures]


def rules(out) -> list[str]:  # type: ignore[no-untyped-def]
    return [err.rule for _, err in out.rejected]


# ----- single rules --------------------------------------------------------------------


def test_activation_opens_a_tenure() -> None:
    out = replay(NUMBER, [], [event("activated", date(2020, 1, 1), holder="alice")], quarantine)
    assert spans(out.state) == [("h:alice", CMCC, date(2020, 1, 1), None, None)]
    assert out.state.open_since == date(2020, 1, 1) and out.state.first_known_on == date(2020, 1, 1)


def test_cancellation_ends_the_tenure_and_starts_quarantine() -> None:
    out = replay(
        NUMBER,
        [],
        [event("activated", date(2020, 1, 1), holder="alice"), event("cancelled", date(2021, 1, 1))],
        quarantine,
    )
    assert spans(out.state) == [("h:alice", CMCC, date(2020, 1, 1), date(2021, 1, 1), "cancelled")]
    assert out.state.quarantine_until == date(2021, 1, 1) + timedelta(days=90)
    assert out.state.open_since is None and out.state.last_change_on == date(2021, 1, 1)


def test_transfer_ends_one_tenure_and_opens_the_next_on_the_same_day() -> None:
    out = replay(
        NUMBER,
        [],
        [event("activated", date(2020, 1, 1), holder="alice"), event("transferred", date(2021, 1, 1), holder="bob")],
        quarantine,
    )
    assert spans(out.state) == [
        ("h:alice", CMCC, date(2020, 1, 1), date(2021, 1, 1), "transferred"),
        ("h:bob", CMCC, date(2021, 1, 1), None, None),
    ]


def test_port_moves_the_carrier_and_keeps_the_holder() -> None:
    out = replay(
        NUMBER,
        [],
        [
            event("activated", date(2020, 1, 1), holder="alice"),
            event("ported", date(2020, 6, 1), to_carrier=CUCC),
        ],
        quarantine,
    )
    assert spans(out.state) == [("h:alice", CUCC, date(2020, 1, 1), None, None)]
    assert out.state.carrier_id == CUCC


def test_quarantine_length_is_the_cancelling_carriers() -> None:
    acts = [
        event("activated", date(2020, 1, 1), holder="alice", carrier=CTCC),
        event("cancelled", date(2021, 1, 1), carrier=CTCC),
    ]
    ok = replay(NUMBER, [], [*acts, event("activated", date(2021, 1, 31), holder="bob", carrier=CTCC)], quarantine)
    assert ok.rejected == [] and len(ok.state.tenures) == 2


def test_activation_inside_quarantine_is_refused() -> None:
    out = replay(
        NUMBER,
        [],
        [
            event("activated", date(2020, 1, 1), holder="alice"),
            event("cancelled", date(2021, 1, 1)),
            event("activated", date(2021, 3, 31), holder="bob"),
        ],
        quarantine,
    )
    assert rules(out) == ["in_quarantine"] and len(out.accepted) == 2


def test_second_activation_while_open_is_refused() -> None:
    out = replay(
        NUMBER,
        [],
        [event("activated", date(2020, 1, 1), holder="alice"), event("activated", date(2020, 2, 1), holder="bob")],
        quarantine,
    )
    assert rules(out) == ["tenure_open"]
    assert spans(out.state) == [("h:alice", CMCC, date(2020, 1, 1), None, None)]


def test_cancellation_of_a_number_nobody_holds_is_refused() -> None:
    out = replay(NUMBER, [], [event("cancelled", date(2020, 1, 1))], quarantine)
    assert rules(out) == ["no_open_tenure"] and out.state.tenures == []


def test_events_from_a_carrier_that_does_not_serve_the_number_are_refused() -> None:
    out = replay(
        NUMBER,
        [],
        [event("activated", date(2020, 1, 1), holder="alice"), event("cancelled", date(2020, 5, 1), carrier=CUCC)],
        quarantine,
    )
    assert rules(out) == ["not_serving_carrier"]


def test_transfer_to_the_same_holder_is_refused() -> None:
    out = replay(
        NUMBER,
        [],
        [event("activated", date(2020, 1, 1), holder="alice"), event("transferred", date(2020, 5, 1), holder="alice")],
        quarantine,
    )
    assert rules(out) == ["same_holder"]


def test_double_suspension_and_resume_without_suspension_are_refused() -> None:
    base = [event("activated", date(2020, 1, 1), holder="alice"), event("suspended", date(2020, 2, 1))]
    assert rules(replay(NUMBER, [], [*base, event("suspended", date(2020, 3, 1))], quarantine)) == ["already_suspended"]
    fresh = [event("activated", date(2020, 1, 1), holder="alice"), event("resumed", date(2020, 2, 1))]
    assert rules(replay(NUMBER, [], fresh, quarantine)) == ["not_suspended"]


def test_new_event_that_breaks_a_held_later_event_is_refused_and_history_kept() -> None:
    held = [
        event("activated", date(2020, 1, 1), holder="alice", place=1),
        event("cancelled", date(2021, 1, 1), place=2),
    ]
    # a cancellation before the held one leaves the later cancellation with nobody to cancel
    out = replay(NUMBER, held, [event("cancelled", date(2020, 6, 1))], quarantine)
    assert rules(out) == ["contradicts_later"]
    assert spans(out.state) == [("h:alice", CMCC, date(2020, 1, 1), date(2021, 1, 1), "cancelled")]


def test_consistent_new_events_are_all_accepted_with_held_ones() -> None:
    held = [event("activated", date(2020, 1, 1), holder="alice", place=1)]
    new = [event("cancelled", date(2021, 1, 1)), event("activated", date(2021, 6, 1), holder="bob")]
    out = replay(NUMBER, held, new, quarantine)
    assert out.rejected == [] and out.accepted == new and len(out.state.tenures) == 2


# ----- the property: order of arrival does not matter -----------------------------------


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """A valid history, built one event at a time from what the rules allow next."""
    events: list[Event] = []
    at = datetime(2015, 1, 1, 2, tzinfo=UTC)
    holders = ["alice", "bob", "carol", "dave"]
    holder: str | None = None
    carrier: int | None = None
    suspended = False
    quarantine_until: date | None = None
    for _ in range(draw(st.integers(1, 14))):
        at += timedelta(hours=draw(st.integers(1, 24 * 400)))
        day = (at + timedelta(hours=8)).date()  # Beijing day
        if holder is None:
            if quarantine_until is not None and day < quarantine_until:
                at += timedelta(days=(quarantine_until - day).days)
                day = (at + timedelta(hours=8)).date()
            holder = draw(st.sampled_from(holders))
            carrier = draw(st.sampled_from(sorted(QUARANTINE)))
            kind, extra = "activated", {"holder": holder, "carrier": carrier}
        else:
            assert carrier is not None
            options = ["cancelled", "ported", "transferred", "resumed" if suspended else "suspended"]
            kind = draw(st.sampled_from(options))
            extra = {"carrier": carrier}
            if kind == "cancelled":
                quarantine_until = day + timedelta(days=quarantine(carrier))
                holder, suspended = None, False
            elif kind == "ported":
                to = draw(st.sampled_from([c for c in QUARANTINE if c != carrier]))
                extra["to_carrier"] = to
                carrier = to
            elif kind == "transferred":
                holder = draw(st.sampled_from([h for h in holders if h != holder]))
                extra["holder"] = holder
                suspended = False
            else:
                suspended = kind == "suspended"
        ev = event(kind, day, **extra)  # type: ignore[arg-type]
        ev.occurred_at = at
        events.append(ev)
    return events


@settings(max_examples=150, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_shuffled_history_replays_to_the_same_tenures(history: list[Event], rnd: random.Random) -> None:
    in_order = replay(NUMBER, [], history, quarantine)
    assert in_order.rejected == []
    shuffled = list(history)
    rnd.shuffle(shuffled)
    out = replay(NUMBER, [], shuffled, quarantine)
    assert out.rejected == []
    assert spans(out.state) == spans(in_order.state)


@settings(max_examples=100, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_history_split_into_held_and_new_replays_to_the_same_tenures(history: list[Event], rnd: random.Random) -> None:
    """However a history is split between the ledger and a later batch, the result is the same."""
    cut = rnd.randint(0, len(history))
    held = [
        Event(**{**{f: getattr(e, f) for f in Event.__slots__}, "place": i + 1}) for i, e in enumerate(history[:cut])
    ]
    new = history[cut:]
    rnd.shuffle(new)
    out = replay(NUMBER, held, new, quarantine)
    assert out.rejected == []
    assert spans(out.state) == spans(replay(NUMBER, [], history, quarantine).state)


# ----- the day rule ----------------------------------------------------------------------


def state_of(*events: Event) -> NumberState:
    out = replay(NUMBER, [], list(events), quarantine)
    assert out.rejected == []
    return out.state


def check(state: NumberState, since: date) -> str:
    return answer(NUMBER, since, state.first_known_on, state.open_since, state.last_change_on).result


def test_activation_day_belongs_to_the_new_holder() -> None:
    state = state_of(event("activated", date(2020, 3, 1), holder="alice"))
    assert check(state, date(2020, 3, 1)) == "no"
    assert check(state, date(2020, 2, 29)) == "no_data"


def test_transfer_day_belongs_to_the_new_holder() -> None:
    state = state_of(
        event("activated", date(2019, 1, 1), holder="alice"), event("transferred", date(2022, 2, 2), holder="bob")
    )
    assert check(state, date(2022, 2, 1)) == "yes"
    assert check(state, date(2022, 2, 2)) == "no"


def test_cancellation_day_is_not_covered_by_the_ended_tenure() -> None:
    state = state_of(event("activated", date(2019, 1, 1), holder="alice"), event("cancelled", date(2021, 5, 1)))
    # the tenure in force at the end of 1 May is none: the number changed hands (or will)
    assert check(state, date(2021, 5, 1)) == "yes"
    assert check(state, date(2021, 4, 30)) == "yes"


def test_reissue_day_and_after_belong_to_the_new_holder() -> None:
    state = state_of(
        event("activated", date(2018, 1, 10), holder="alice"),
        event("cancelled", date(2021, 5, 1)),
        event("activated", date(2021, 8, 15), holder="bob"),
    )
    assert check(state, date(2021, 8, 14)) == "yes"
    assert check(state, date(2021, 8, 15)) == "no"
    assert answer(
        NUMBER, date(2019, 1, 1), state.first_known_on, state.open_since, state.last_change_on
    ).last_change_on == (date(2021, 8, 15))


def test_port_is_not_a_change_of_hands() -> None:
    state = state_of(
        event("activated", date(2019, 1, 1), holder="alice"), event("ported", date(2020, 1, 1), to_carrier=CUCC)
    )
    assert check(state, date(2019, 6, 1)) == "no"


def test_a_refused_event_leaves_no_reference_cycle_for_the_collector() -> None:
    # An import turns the collector off and runs it once per commit (importer.py), so
    # every chunk it replays must be freed as soon as it is dropped.
    import gc

    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        existing = [event("activated", date(2020, 1, 1), holder="alice", place=1)]
        out = replay(
            NUMBER,
            existing,
            [
                event("activated", date(2020, 2, 1), holder="bob"),
                event("cancelled", date(2019, 6, 1)),
                event("suspended", date(2021, 1, 1)),
            ],
            quarantine,
        )
        assert rules(out) == ["no_open_tenure", "tenure_open"]
        del out
        assert gc.collect() == 0
    finally:
        if was_enabled:
            gc.enable()
