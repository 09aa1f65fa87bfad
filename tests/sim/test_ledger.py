"""The synthetic ledger tells a history the hub's rules accept whole, read as the hub reads it."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tongcha.kit.digests import Digester
from tongcha.ledger.parse import EventParser, Rejection
from tongcha.ledger.replay import Event, replay
from tongcha.sim.ledger import SynthConfig, generate


def test_a_generated_history_breaks_none_of_the_ledgers_rules() -> None:
    # The hub's day of an event is its day in Beijing: a re-issue the generator dates the
    # 90th day after a cancellation must not fall inside the quarantine on that reading.
    cfg = SynthConfig(numbers=20_000, seed=3, today=date(2026, 11, 1))
    codes = {code: i for i, code in enumerate(cfg.carriers, start=1)}
    now = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    parsers = {
        code: EventParser(i, codes, Digester(b"test key", 1), ZoneInfo("Asia/Shanghai"), now, timedelta(minutes=5))
        for code, i in codes.items()
    }
    histories: defaultdict[int, list[Event]] = defaultdict(list)
    for raw in generate(cfg):
        event = parsers[str(raw.pop("carrier"))].parse(raw)
        assert not isinstance(event, Rejection), event
        histories[event.number].append(event)
    assert len(histories) == cfg.numbers
    refused = {
        number: [(e.day, err.rule) for e, err in outcome.rejected]
        for number, events in histories.items()
        if (outcome := replay(number, (), events, lambda _carrier: cfg.quarantine_days)).rejected
    }
    assert refused == {}
