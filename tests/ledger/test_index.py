"""The in-memory check index agrees with a plain model of it, and with the ledger it loads."""

from __future__ import annotations

import bisect
import random
import threading
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import ALICE, BOB, ev, id_number
from tongcha.kit.clock import FixedClock
from tongcha.kit.settings import Settings
from tongcha.ledger import index as ledger_index
from tongcha.ledger import repository as repo
from tongcha.ledger import service
from tongcha.ledger.index import EPOCH, RESULT_NAMES, LedgerIndex, Snapshot, from_day
from tongcha.ledger.models import Carrier

Days = tuple[int, int, int]

numbers_st = st.integers(10_000_000_000, 19_999_999_999)
days_st = st.tuples(st.integers(3_650, 20_000), st.integers(0, 20_000), st.integers(3_650, 20_000))
entries_st = st.dictionaries(numbers_st, days_st, max_size=300)


def build(model: dict[int, Days]) -> Snapshot:
    items = list(model.items())
    random.Random(len(items)).shuffle(items)  # build must not need sorted input
    return Snapshot.build(
        np.array([n for n, _ in items], dtype=np.int64),
        np.array([d[0] for _, d in items], dtype=np.uint16),
        np.array([d[1] for _, d in items], dtype=np.uint16),
        np.array([d[2] for _, d in items], dtype=np.uint16),
    )


def probes(model: dict[int, Days], extra: list[int]) -> list[int]:
    """Every known number, its neighbours, and unrelated numbers."""
    keys = sorted(model)
    near = [k + d for k in keys for d in (-1, 1, 1 << 32)]
    out = [*keys, *near, *extra, 10_000_000_000, 19_999_999_999]
    return [n for n in out if 10_000_000_000 <= n <= 19_999_999_999]


def model_lookup(model: dict[int, Days], number: int) -> Days:
    keys = sorted(model)
    at = bisect.bisect_left(keys, number)
    if at < len(keys) and keys[at] == number:
        return model[number]
    return (0, 0, 0)


def as_dates(d: Days) -> tuple[date | None, date | None, date | None]:
    return (from_day(d[0]), from_day(d[1]), from_day(d[2]))


@settings(max_examples=80, deadline=None)
@given(entries_st, st.lists(numbers_st, max_size=50))
def test_snapshot_positions_find_exactly_the_known_numbers(model: dict[int, Days], extra: list[int]) -> None:
    snap = build(model)
    asked = probes(model, extra)
    pos = snap.positions(np.array(asked, dtype=np.int64))
    for number, p in zip(asked, pos.tolist(), strict=True):
        if number in model:
            assert p >= 0
            assert (int(snap.first[p]), int(snap.open_since[p]), int(snap.last[p])) == model[number]
        else:
            assert p == -1
    assert sorted(snap.numbers().tolist()) == sorted(model)


@settings(max_examples=80, deadline=None)
@given(entries_st, st.lists(numbers_st, max_size=50))
def test_index_lookup_and_days_agree_with_a_dict(model: dict[int, Days], extra: list[int]) -> None:
    idx = LedgerIndex(build(model))
    asked = probes(model, extra)
    first, open_since, last = idx.days(np.array(asked, dtype=np.int64))
    for i, number in enumerate(asked):
        want = model_lookup(model, number)
        assert (int(first[i]), int(open_since[i]), int(last[i])) == want
        assert idx.lookup(number) == as_dates(want)


@settings(max_examples=60, deadline=None)
@given(entries_st, st.lists(entries_st, min_size=1, max_size=5), st.integers(1, 40))
def test_overlay_and_merges_agree_with_a_dict(
    model: dict[int, Days], updates: list[dict[int, Days]], merge_at: int
) -> None:
    idx = LedgerIndex(build(model), revision=1, merge_at=merge_at)
    model = dict(model)
    for rev, update in enumerate(updates, start=2):
        # updates reuse some known numbers and add new ones
        known = sorted(model)[: len(update) // 2]
        changes = dict(update)
        for number, days in zip(known, update.values(), strict=False):
            changes[number] = days
        rows = [
            (n, EPOCH + timedelta(days=d[0]), from_day(d[1]), EPOCH + timedelta(days=d[2])) for n, d in changes.items()
        ]
        idx.apply(rows, rev)
        model.update(changes)
        assert idx.revision == rev
        asked = probes(model, [])
        first, open_since, last = idx.days(np.array(asked, dtype=np.int64))
        for i, number in enumerate(asked):
            want = model_lookup(model, number)
            assert (int(first[i]), int(open_since[i]), int(last[i])) == want
            assert idx.lookup(number) == as_dates(want)
    assert len(idx) == len(model)


def test_merge_folds_the_overlay_into_the_snapshot() -> None:
    idx = LedgerIndex(build({13800138000: (18000, 18000, 18000)}), revision=1, merge_at=2)
    idx.apply([(13900139000, date(2020, 1, 1), None, date(2021, 1, 1))], 2)
    assert len(idx.snapshot) == 1  # still in the overlay
    idx.apply(
        [
            (13800138000, date(2019, 1, 1), date(2019, 1, 1), date(2019, 1, 1)),
            (15000150000, date(2020, 1, 1), date(2020, 1, 1), date(2020, 1, 1)),
        ],
        3,
    )
    assert len(idx.snapshot) == 3 and len(idx) == 3
    assert idx.lookup(13800138000) == (date(2019, 1, 1), date(2019, 1, 1), date(2019, 1, 1))
    assert idx.lookup(13900139000) == (date(2020, 1, 1), None, date(2021, 1, 1))


@settings(max_examples=60, deadline=None)
@given(entries_st, st.lists(st.tuples(numbers_st, st.integers(0, 20_000)), max_size=60))
def test_vectorised_answers_match_service_answer(model: dict[int, Days], asks: list[tuple[int, int]]) -> None:
    # keep the model's days coherent: first <= open_since <= last when open
    coherent = {}
    for n, (f, o, lc) in model.items():
        o = 0 if o == 0 else max(o, f)
        coherent[n] = (f, o, max(lc, o, f))
    idx = LedgerIndex(build(coherent))
    asks = asks + [(n, d) for n, (f, o, _) in list(coherent.items())[:40] for d in (f - 1, f, o, o + 1) if d > 0]
    numbers = np.array([n for n, _ in asks], dtype=np.int64)
    since = np.array([d for _, d in asks], dtype=np.int32)
    codes, last = idx.answer_days(numbers, since)
    for (number, day), code, lc in zip(asks, codes.tolist(), last.tolist(), strict=True):
        expected = service.answer(number, EPOCH + timedelta(days=day), *idx.lookup(number))
        assert RESULT_NAMES[code] == expected.result
        assert from_day(lc) == expected.last_change_on


def test_empty_index_knows_nothing() -> None:
    idx = LedgerIndex()
    assert idx.lookup(13800138000) == (None, None, None)
    codes, _ = idx.answer_days(np.array([13800138000], dtype=np.int64), np.array([18000], dtype=np.int32))
    assert RESULT_NAMES[int(codes[0])] == "no_data"


# ----- loaded from the database -----------------------------------------------------------


def random_history(rng: random.Random, number: str, serial: int) -> list[dict[str, object]]:
    """activated, maybe transferred, maybe cancelled and re-issued."""
    people = [{"id_number": id_number(serial=(serial * 3 + k) % 1000), "name": f"用户{k}"} for k in range(3)]
    day = date(2015, 1, 1) + timedelta(days=rng.randint(0, 2000))
    evs: list[dict[str, object]] = []

    def add(kind: str, d: date, holder: dict[str, str] | None = None) -> None:
        e: dict[str, object] = {
            "event_id": f"{number}-{len(evs)}",
            "type": kind,
            "number": number,
            "occurred_at": f"{d.isoformat()}T10:00:00+08:00",
        }
        if holder is not None:
            e["holder"] = holder
        evs.append(e)

    add("activated", day, people[0])
    shape = rng.choice(["open", "transferred", "cancelled", "reissued"])
    if shape == "transferred":
        day += timedelta(days=rng.randint(1, 900))
        add("transferred", day, people[1])
    elif shape in ("cancelled", "reissued"):
        day += timedelta(days=rng.randint(1, 900))
        add("cancelled", day)
        if shape == "reissued":
            day += timedelta(days=90 + rng.randint(0, 300))
            add("activated", day, people[2])
    return evs


@pytest.mark.usefixtures("parties")
def test_loaded_index_matches_answers_from_the_tenures(
    engine: Engine, sessions: sessionmaker[Session], settings: Settings, clock: FixedClock
) -> None:
    rng = random.Random(7)
    numbers = sorted(
        {rng.choice(["138", "139", "150", "186", "199"]) + f"{rng.randrange(10**8):08d}" for _ in range(60)}
    )
    events = [e for i, n in enumerate(numbers) for e in random_history(rng, "+86" + n, i)]
    rng.shuffle(events)
    with sessions() as session, session.begin():
        carrier = session.query(Carrier).filter_by(code="CMCC").one()
        result = service.ingest(session, carrier, events, clock=clock, settings=settings, source="test")
    assert result.rejected == [] and result.accepted == len(events)

    idx = ledger_index.load(engine)
    assert len(idx) == len(numbers)
    with sessions() as session:
        tenures = session.execute(
            text("SELECT number, seq, started_on, ended_on FROM tenures ORDER BY number, seq")
        ).all()
    by_number: dict[int, list[tuple[date, date | None]]] = {}
    for number, _, started, ended in tenures:
        start = _d(started)
        assert start is not None  # started_on is NOT NULL
        by_number.setdefault(int(number), []).append((start, _d(ended)))
    assert sorted(by_number) == [int(n) for n in numbers]
    today = service.today_in(settings, clock)
    for number, spans in by_number.items():
        first = spans[0][0]
        open_since = spans[-1][0] if spans[-1][1] is None else None
        last = spans[-1][1] or spans[-1][0]
        assert idx.lookup(number) == (first, open_since, last)
        days = {first - timedelta(days=1), first, today}
        for start, end in spans:
            days |= {start, start - timedelta(days=1), start + timedelta(days=1)}
            if end is not None:
                days |= {end, end - timedelta(days=1)}
        for day in sorted(days):
            from_index = service.answer(number, day, *idx.lookup(number))
            expected = service.answer(number, day, first, open_since, last)
            assert from_index == expected
            # and the tenure in force at the end of the day is the open one exactly when "no"
            in_force = [s for s in spans if s[0] <= day and (s[1] is None or day < s[1])]
            if from_index.result == "no":
                assert in_force and in_force[-1][1] is None
            elif from_index.result == "yes":
                assert not in_force or in_force[-1][1] is not None


def _d(value: object) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def test_single_position_agrees_with_the_vectorised_lookup() -> None:
    import numpy as np

    from tongcha.ledger.index import Snapshot

    rng = np.random.default_rng(5)
    numbers = np.unique(rng.integers(13_000_000_000, 20_000_000_000, size=50_000))
    dense = np.arange(15_000_000_000, 15_000_020_000, dtype=np.int64)
    numbers = np.unique(np.concatenate([numbers, dense]))
    days = np.ones(len(numbers), dtype=np.uint16)
    snap = Snapshot.build(numbers, days, days, days)
    asked = np.concatenate([numbers[::97], rng.integers(10_000_000_000, 20_000_000_000, size=2_000)])
    expected = snap.positions(asked)
    assert [snap.position(int(n)) for n in asked] == expected.tolist()
    assert (expected >= 0).sum() >= len(numbers[::97])


@pytest.mark.usefixtures("parties")
def test_a_refresh_that_read_before_a_change_does_not_hide_it_from_a_refresh_that_read_after(
    engine: Engine,
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two refreshes at once (after a carrier's post, and for a check): the first reads
    # the ledger, the number changes again and the second reads and applies that; the
    # first then applies what it read. The index must not end with the older state
    # under a revision that says it has the newer one.
    number = "+8613800138000"

    def send(events: list[dict[str, object]]) -> None:
        with sessions() as session, session.begin():
            carrier = session.query(Carrier).filter_by(code="CMCC").one()
            assert service.ingest(session, carrier, events, clock=clock, settings=settings, source="test").accepted

    send([ev("activated", number, "2020-01-01", ALICE)])
    idx = ledger_index.load(engine)
    send([ev("cancelled", number, "2021-01-01")])  # what the first refresh reads

    read = threading.Event()
    later_applied = threading.Event()
    summaries = repo.number_summaries_since

    def first_reader(session: Session, revision: int) -> list[tuple[int, date, date | None, date]]:
        rows = summaries(session, revision)
        if threading.current_thread().name == "first":
            read.set()
            later_applied.wait(1)  # the second refresh goes on meanwhile, if it may
        return rows

    monkeypatch.setattr(repo, "number_summaries_since", first_reader)

    def refresh() -> None:
        with sessions() as session:
            idx.refresh(session)

    first = threading.Thread(target=refresh, name="first")
    first.start()
    assert read.wait(10)
    send([ev("activated", number, "2021-06-01", BOB)])  # re-issued: what the second reads

    def refresh_and_say() -> None:
        refresh()
        later_applied.set()

    second = threading.Thread(target=refresh_and_say, name="second")
    second.start()
    first.join(10)
    second.join(10)
    assert idx.lookup(13800138000) == (date(2020, 1, 1), date(2021, 6, 1), date(2021, 6, 1))
