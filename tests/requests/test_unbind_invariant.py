"""The safety invariant of 一键解绑, as a property over any ledger history (ports,
transfers, suspensions, re-issues, a holder who comes back after others): an unbind of
the previous holders' bindings never touches a binding the current holder made in any
of their tenures, never deletes an account, and leaves no previous holder's binding
made on a day the current holder did not hold the number at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.ledger.test_replay import NUMBER, histories, quarantine
from tongcha.kit.phone import e164
from tongcha.kit.workdays import local_midnight
from tongcha.ledger.replay import Event, EventType, replay
from tongcha.requests.service import unbind_cutoff, unbind_plan
from tongcha.sim.accounts import AccountStore, SimAccount
from tongcha.sim.platforms import enterprise

SHANGHAI = ZoneInfo("Asia/Shanghai")
OPENING = (EventType.activated, EventType.transferred)


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_unbind_never_touches_the_current_holders_bindings(history: list[Event], data: st.DataObject) -> None:
    state = replay(NUMBER, [], history, quarantine).state
    current = state.tenures[-1] if state.tenures and state.tenures[-1].ended_on is None else None
    in_order = sorted(history, key=lambda e: e.occurred_at)
    openings = [e for e in in_order if e.type in OPENING]
    number = e164(NUMBER)
    store = AccountStore(enterprise("JD"))
    mine: set[str] = set()
    # Each holder binds accounts at moments while they hold the number: from the event
    # that gave it to them until the event that ended their tenure (or now).
    ends = [e.occurred_at for e in in_order if e.type in (*OPENING, "cancelled")]
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for i, opening in enumerate(openings):
        later = [t for t in ends if t > opening.occurred_at]
        until = later[0] if later else now
        span = max(1, int((until - opening.occurred_at).total_seconds()))
        for k in range(data.draw(st.integers(0, 3))):
            bound_at = opening.occurred_at + timedelta(seconds=data.draw(st.integers(0, span - 1)))
            ref = f"{i}-{k}"
            store.add(SimAccount(ref, "jd", opening.holder_digest or "?", "x", number, bound_at, bound_at))
            if current is not None and opening.holder_digest == current.holder_digest:
                mine.add(ref)
    if current is None:
        return  # nobody holds it now: nobody may unbind
    plan = unbind_plan(state.tenures, current.holder_digest)
    # What the hub asks of the platform: one unbind, then per stretch a listing and an
    # unbind of each account listed (as fanout does with the listing's answer).
    before = set(store.accounts)
    unbound, _ = store.unbind(number, unbind_cutoff(plan.bound_before, SHANGHAI), task_id="t", at=now)
    for low, high in plan.spans:
        listed = store.bound_between(number, local_midnight(low, SHANGHAI), local_midnight(high, SHANGHAI))
        for account in listed:
            assert store.act(number, account.account_ref, "unbind", task_id="t", at=now) is None
            unbound.append(account.account_ref)
    assert mine.isdisjoint(unbound)
    assert all(store.accounts[ref].number == number for ref in mine)
    # nothing is deleted: every account is still there, detached or not
    assert set(store.accounts) == before
    assert all(store.accounts[ref].number is None for ref in unbound)
    # and every other holder's binding made on a day the current holder never held the
    # number, not even for part of it, is gone
    theirs = {ref for ref, account in store.accounts.items() if ref not in mine}
    days_held = {
        (tenure.started_on + timedelta(days=d))
        for tenure in state.tenures
        if tenure.holder_digest == current.holder_digest
        for d in range(((tenure.ended_on or now.date()) - tenure.started_on).days + 1)
    }
    for ref in theirs:
        day = store.accounts[ref].bound_at.astimezone(SHANGHAI).date()
        if day not in days_held:
            assert ref in unbound, (ref, day, plan)
