"""The check log's number digests, made many at a time in C, are Digester.number's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tongcha.kit.digests import Digester
from tongcha.ledger._native import number_digests

keys = st.binary(min_size=1, max_size=100)  # past 64 bytes HMAC hashes the key first


@settings(max_examples=200, deadline=None)
@given(
    keys, st.integers(1, 99), st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(10**10, 2 * 10**10), max_size=50)
)
def test_number_digests_made_at_once_are_those_made_one_by_one(key: bytes, version: int, numbers: list[int]) -> None:
    digester = Digester(key, version)
    at_once = number_digests(digester.key, digester.prefix.encode(), np.array(numbers, dtype=np.int64))
    assert at_once == [digester.number(n) for n in numbers]


def test_a_buffer_that_is_not_of_whole_integers_is_refused() -> None:
    with pytest.raises(ValueError, match="8-byte integers"):
        number_digests(b"key", b"k1:", b"\x00" * 12)
    with pytest.raises(ValueError, match="contiguous"):
        number_digests(b"key", b"k1:", np.arange(10, dtype=np.int64)[::2])  # not contiguous
