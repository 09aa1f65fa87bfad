"""Reading what a client sent as JSON: what orjson reads, and lone surrogates JSON allows."""

from __future__ import annotations

import orjson
import pytest

from tongcha.kit import jsonio


def test_an_escaped_lone_surrogate_is_read() -> None:
    assert jsonio.loads(b'["\\ud800", "\\udc00x", "ok"]') == ["\ud800", "\udc00x", "ok"]


@pytest.mark.parametrize(
    "body",
    [
        b'["\\ud800", NaN]',
        b'["\\ud800", Infinity]',
        b'["\\ud800", ' + b"[" * 5000 + b"]" * 5000 + b"]",
        b'["\xed\xa0\x80"]',
        b'["\\ud800"',
    ],
    ids=["nan", "infinity", "too-deep", "raw-surrogate-bytes", "unclosed"],
)
def test_what_is_not_json_is_still_refused_with_orjsons_error(body: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        jsonio.loads(body)


def test_a_lone_surrogate_reads_as_the_replacement_character() -> None:
    assert jsonio.replace_lone_surrogates("a\ud800b\U0001f600") == "a\ufffdb\U0001f600"
    assert not jsonio.is_utf8("\ud800") and jsonio.is_utf8("张伟")
