"""Carrier events are parsed on a thread ahead of the writer: in order, whole, and stoppable."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.factories import ALICE, BOB, ev, id_number
from tongcha.kit.digests import Digester
from tongcha.ledger.parse import EventParser, Rejection
from tongcha.ledger.service import ParsedStream

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)


def parser() -> EventParser:
    return EventParser(1, {"CMCC": 1}, Digester(b"test key", 1), ZoneInfo("Asia/Shanghai"), NOW, timedelta(minutes=5))


def parse_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tongcha-parse"]


def test_chunks_keep_the_input_order_and_say_what_was_refused_or_repeated() -> None:
    raw: list[Any] = [ev("activated", f"+86138001380{i:02d}", "2020-01-01", ALICE, event_id=f"a{i}") for i in range(7)]
    raw.insert(3, ev("activated", "+8612345", "2020-01-01", BOB, event_id="bad-number"))
    raw.append(ev("cancelled", "+8613800138000", "2021-01-01", event_id="a0"))  # a repeated event id
    stream = ParsedStream(raw, parser(), chunk_size=4)
    try:
        chunks = list(stream)
    finally:
        stream.close()
    assert [len(c.events) + len(c.rejected) + c.duplicates for c in chunks] == [4, 4, 1]
    assert [e.event_id for c in chunks for e in c.events] == [f"a{i}" for i in range(7)]
    assert [(r.event_id, r.rule) for c in chunks for r in c.rejected] == [("bad-number", "bad_field")]
    assert sum(c.duplicates for c in chunks) == 1
    assert parse_threads() == []


def test_a_read_error_reaches_the_writer_after_the_chunks_read_before_it() -> None:
    def broken() -> Iterator[Any]:
        for i in range(5):
            yield ev("activated", f"+86138001380{i:02d}", "2020-01-01", ALICE)
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    stream = ParsedStream(broken(), parser(), chunk_size=2)
    chunks = iter(stream)
    try:
        assert [len(next(chunks).events), len(next(chunks).events)] == [2, 2]
        # The fifth event's chunk is cut short by the error, which the writer gets.
        with pytest.raises(UnicodeDecodeError):
            next(chunks)
    finally:
        stream.close()


def test_a_writer_that_stops_early_lets_the_parsing_thread_go() -> None:
    endless = (ev("activated", f"+86138{i:08d}", "2020-01-01", ALICE) for i in range(10**9))
    stream = ParsedStream(endless, parser(), chunk_size=100, ahead=1)
    first = next(iter(stream))
    assert len(first.events) == 100
    stream.close()
    assert parse_threads() == []


def test_a_holder_named_as_typed_digests_as_the_name_a_citizen_gives_for_verification() -> None:
    # A carrier's system may keep a transliterated name with a full-width dot and spaces.
    idn = id_number(region="650102", born="19800101")
    typed = {"id_number": idn, "name": " 阿卜杜 ・ 热合曼 "}
    event = parser().parse(ev("activated", "+8613800138000", "2020-01-01", typed))
    digests = Digester(b"test key", 1)
    assert not isinstance(event, Rejection)
    assert event.kyc_digest == digests.kyc(idn, "阿卜杜·热合曼")
    assert event.holder_digest == digests.holder(idn)
    assert event.tail_digest == digests.tail(13800138000, idn)


def test_settled_ids_are_forgotten_but_a_refused_one_is_still_a_repeat() -> None:
    # A writer settles the first chunk: a0 committed, a1 refused by the ledger's rules.
    raw: list[Any] = [ev("activated", f"+86138001380{i:02d}", "2020-01-01", ALICE, event_id=f"a{i}") for i in range(2)]
    again = [ev("activated", f"+86138001380{i:02d}", "2020-01-01", ALICE, event_id=f"a{i}") for i in range(2)]
    feed = threading.Event()

    def held_back() -> Iterator[Any]:
        yield from raw
        feed.wait(10)  # the repeats only once the first chunk is settled
        yield from again

    stream = ParsedStream(held_back(), parser(), chunk_size=2, ahead=1)
    chunks = iter(stream)
    try:
        first = next(chunks)
        assert [e.event_id for e in first.events] == ["a0", "a1"]
        stream.settled([first], {"a1"})
        feed.set()
        second = next(chunks)
    finally:
        stream.close()
    # a0's repeat comes out again, for the ledger's key to tell; a1's is counted here.
    assert [e.event_id for e in second.events] == ["a0"]
    assert second.duplicates == 1
