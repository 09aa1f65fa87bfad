"""The keyed digests are plain HMAC-SHA-256, base64url without padding, tagged by key version."""

from __future__ import annotations

import base64
import hmac

from hypothesis import given
from hypothesis import strategies as st

from tongcha.kit.digests import Digester, _normalised, normalise_name


def _reference(key: bytes, purpose: bytes, value: bytes) -> str:
    mac = hmac.digest(key, purpose + value, "sha256")
    return "k3:" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


@given(key=st.binary(min_size=1, max_size=200), value=st.text(max_size=80))
def test_digests_equal_the_standard_hmac(key: bytes, value: str) -> None:
    # Keys longer than SHA-256's 64-byte block are hashed first, as RFC 2104 says.
    digester = Digester(key, 3)
    assert digester.client(value) == _reference(key, b"client\x00", value.encode())
    assert digester.holder(value) == _reference(key, b"holder\x00", value.encode())


@given(
    key=st.binary(min_size=1, max_size=200),
    id_number=st.text(min_size=1, max_size=20),
    name=st.text(max_size=20),
    number=st.integers(min_value=0),
)
def test_an_events_three_digests_at_once_are_the_three_alone(
    key: bytes, id_number: str, name: str, number: int
) -> None:
    digester = Digester(key, 3)
    assert digester.identity(id_number, name, number) == (
        _reference(key, b"holder\x00", id_number.encode()),
        _reference(key, b"kyc\x00", f"{id_number}\x00{name}".encode()),
        _reference(key, b"tail\x00", f"{number}\x00{id_number[-6:]}".encode()),
    )
    assert digester.identity(id_number, name, number) == (
        digester.holder(id_number),
        digester.kyc_of_normalised(id_number, name),
        digester.tail(number, id_number),
    )


def test_each_purpose_and_key_gives_a_different_digest() -> None:
    one, other = Digester(b"first key", 1), Digester(b"second key", 1)
    id_number = "11010519491231002X"
    assert one.holder(id_number) != other.holder(id_number)
    assert one.holder(id_number) != one.client(id_number)
    # Repeated calls reuse the keyed states without carrying anything over.
    assert one.holder(id_number) == one.holder(id_number)
    assert one.holder(id_number) != one.holder("110105194912310029")


def test_a_name_matches_whichever_dot_or_space_separates_its_parts() -> None:
    # ID cards print U+00B7 between the parts of a transliterated name; people type the
    # dot their keyboard gives them, full-width or not, or a space.
    digester = Digester(b"key", 1)
    id_number = "65010219800101001X"
    printed = digester.kyc(id_number, "阿卜杜·热合曼")
    for typed in (
        "阿卜杜•热合曼",
        "阿卜杜・热合曼",
        "阿卜杜．热合曼",
        "阿卜杜.热合曼",
        "阿卜杜 热合曼",
        " 阿卜杜 · 热合曼 ",
    ):
        assert digester.kyc(id_number, typed) == printed, typed
    assert digester.kyc(id_number, "阿卜杜热合曼") != printed  # the parts stay apart
    assert digester.kyc(id_number, "John Smith") != digester.kyc(id_number, "John·Smith")  # Latin spaces stay


@given(name=st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=12))
def test_a_name_of_ideographs_alone_is_compared_as_it_is_written(name: str) -> None:
    # Such a name skips the steps of normalising; it is what they would make of it.
    assert normalise_name(name) == name == _normalised(name)
