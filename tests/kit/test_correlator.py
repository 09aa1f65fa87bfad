"""Correlators the hub makes up for requests that bring none."""

from __future__ import annotations

import multiprocessing
import re

from tongcha.kit.correlator import correlator_of

NONE_SENT = {"type": "http", "headers": []}


def made_in_a_child(out: multiprocessing.connection.Connection) -> None:
    out.send([correlator_of(NONE_SENT) for _ in range(3)])
    out.close()


def test_made_up_correlators_are_32_hex_characters_and_never_repeat_even_in_a_forked_process() -> None:
    here = [correlator_of(NONE_SENT) for _ in range(1000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in here)
    assert len(set(here)) == len(here)
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=made_in_a_child, args=(send,))
    child.start()
    there = receive.recv()
    child.join()
    assert not set(there) & set(here + [correlator_of(NONE_SENT) for _ in range(3)])


def test_a_well_formed_correlator_sent_is_kept_and_a_bad_one_replaced() -> None:
    assert correlator_of({"headers": [(b"x-correlator", b"req-42.a:b")]}) == "req-42.a:b"
    made = correlator_of({"headers": [(b"x-correlator", b"has spaces in it")]})
    assert re.fullmatch(r"[0-9a-f]{32}", made)
