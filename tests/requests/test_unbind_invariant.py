"""The safety invariant of 一键解绑, as a property over any ledger history (ports,
transfers, suspensions, re-issues): an unbind of the previous holder's bindings never
touches a binding the current holder made, and never deletes an account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ledger.test_replay import NUMBER, histories, quarantine
from tongcha.kit.phone import e164
from tongcha.ledger.replay import Event, EventType, replay
from tongcha.requests.service import unbind_cutoff
from tongcha.sim.accounts import AccountStore, SimAccount
from tongcha.sim.platforms import enterprise

SHANGHAI = ZoneInfo("Asia/Shanghai")
OPENING = (EventType.activated, EventType.transferred)


@settings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_unbind_never_touches_the_current_holders_bindings(history: list[Event], data: st.DataObject) -> None:
    state = replay(NUMBER, [], history, quarantine).state
    current = state.tenures[-1] if state.tenures and state.tenures[-1].ended_on is None else None
    openings = [e for e in sorted(history, key=lambda e: e.occurred_at) if e.type in OPENING]
    number = e164(NUMBER)
    store = AccountStore(enterprise("JD"))
    mine: set[str] = set()
    # Each holder binds accounts at moments while they hold the number: from the event
    # that gave it to them until the event that ended their tenure (or now).
    ends = [e.occurred_at for e in sorted(history, key=lambda e: e.occurred_at) if e.type in (*OPENING, "cancelled")]
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for i, opening in enumerate(openings):
        later = [t for t in ends if t > opening.occurred_at]
        until = later[0] if later else now
        span = max(1, int((until - opening.occurred_at).total_seconds()))
        for k in range(data.draw(st.integers(0, 3))):
            bound_at = opening.occurred_at + timedelta(seconds=data.draw(st.integers(0, span - 1)))
            ref = f"{i}-{k}"
            store.add(SimAccount(ref, "jd", opening.holder_digest or "?", "x", number, bound_at, bound_at))
            if current is not None and i == len(openings) - 1:
                mine.add(ref)
    if current is None:
        return  # nobody holds it now: nobody may unbind
    cutoff = unbind_cutoff(current.started_on, SHANGHAI)
    before = set(store.accounts)
    unbound, kept = store.unbind(number, cutoff, task_id="t", at=now)
    assert mine.isdisjoint(unbound)
    assert all(store.accounts[ref].number == number for ref in mine)
    assert kept >= len(mine)
    # nothing is deleted: every account is still there, detached or not
    assert set(store.accounts) == before
    assert all(store.accounts[ref].number is None for ref in unbound)
    # and what was unbound was bound before the current tenure began
    assert all(store.accounts[ref].bound_at < cutoff for ref in unbound)
