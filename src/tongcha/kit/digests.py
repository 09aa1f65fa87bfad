"""Keyed digests of identity (DESIGN.md "Identity without hoarding identity").

The hub never keeps a name or an ID number: it keeps HMAC-SHA-256 digests under an
operator-held key, each prefixed with the key version (``k1:...``) so the key can rotate.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from tongcha.kit.settings import Settings

# The separator of a transliterated name (阿卜杜·热合曼): ID cards print U+00B7, and
# people type whatever dot their keyboard gives them (after NFKC: . • ‧ ∙ ⋅ ・ ꞏ), or a
# space. All of them compare as U+00B7.
_TO_MIDDLE_DOT = str.maketrans(dict.fromkeys(".\u2022\u2027\u2219\u22c5\u30fb\ua78f", "\u00b7"))
_HAN = "\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_SEPARATOR = re.compile(rf" ?\u00b7(?: ?\u00b7)* ?|(?<=[{_HAN}]) (?=[{_HAN}])")


# Most names are a few CJK Unified Ideographs alone, which every step below leaves as
# they are (NFKC changes none of that block): they are returned at once.
_PLAIN_HAN = re.compile("[\u4e00-\u9fff]+")


def normalise_name(name: str) -> str:
    """How a name is compared: NFKC, trimmed, inner whitespace collapsed, and the dots and
    spaces that separate the parts of a name in Chinese characters made one U+00B7."""
    if _PLAIN_HAN.fullmatch(name):
        return name
    return _normalised(name)


def _normalised(name: str) -> str:
    collapsed = " ".join(unicodedata.normalize("NFKC", name).translate(_TO_MIDDLE_DOT).split())
    return _SEPARATOR.sub("\u00b7", collapsed)


_BLOCK = 64  # SHA-256's block size, as RFC 2104 uses it


def _sha256_mac(inner_state: Any, outer_state: Any, value: bytes) -> bytes:
    """HMAC-SHA-256 of ``value`` from copies of the keyed inner and outer states."""
    inner = inner_state()
    inner.update(value)
    outer = outer_state()
    outer.update(inner.digest())
    return outer.digest()  # type: ignore[no-any-return]


_URLSAFE = bytes.maketrans(b"+/", b"-_")


@dataclass(frozen=True, slots=True)
class Digester:
    """HMAC-SHA-256 (RFC 2104) of a purpose tag and a value, base64url without padding.

    Ingest digests three values per holder event, so the keyed inner and outer SHA-256
    states are computed once per purpose and copied for each value: the same MAC as
    ``hmac.digest(key, purpose + value, "sha256")`` (a test holds them equal) at about
    half its cost.
    """

    key: bytes
    version: int
    # Per purpose, the keyed inner and outer states' ``copy`` methods.
    _states: dict[bytes, tuple[Any, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _prefix: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_prefix", f"k{self.version}:")

    @property
    def prefix(self) -> str:
        """What every digest's text starts with: the key's version, ``k1:``."""
        return self._prefix

    @classmethod
    def from_settings(cls, settings: Settings) -> Digester:
        return cls(settings.secret_key.get_secret_value().encode(), settings.secret_key_version)

    def _keyed(self, purpose: bytes) -> tuple[Any, Any]:
        states = self._states.get(purpose)
        if states is None:
            key = hashlib.sha256(self.key).digest() if len(self.key) > _BLOCK else self.key
            key = key.ljust(_BLOCK, b"\0")
            inner = hashlib.sha256(bytes(b ^ 0x36 for b in key) + purpose)
            outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
            states = self._states[purpose] = (inner.copy, outer.copy)
        return states

    def _mac(self, purpose: bytes, value: bytes) -> str:
        inner_state, outer_state = self._keyed(purpose)
        return self._text(_sha256_mac(inner_state, outer_state, value))

    def _text(self, mac: bytes) -> str:
        # 32 bytes are 44 characters of base64, the last of them padding.
        return self._prefix + binascii.b2a_base64(mac, newline=False)[:43].translate(_URLSAFE).decode()

    def holder(self, id_number: str) -> str:
        """Groups every number held under one ID."""
        return self._mac(b"holder\x00", id_number.encode())

    def kyc(self, id_number: str, name: str) -> str:
        """ID number and name together: what full verification matches."""
        return self.kyc_of_normalised(id_number, normalise_name(name))

    def kyc_of_normalised(self, id_number: str, normalised: str) -> str:
        """``kyc`` of a name already normalised (``normalise_name``), as ingest has it."""
        return self._mac(b"kyc\x00", f"{id_number}\x00{normalised}".encode())

    def identity(self, id_number: str, normalised: str, number: int) -> tuple[str, str, str]:
        """``holder``, ``kyc_of_normalised`` and ``tail`` at once, as ingest digests every
        holder event: the same digests for about a tenth less than three calls."""
        text, mac = self._text, _sha256_mac
        holder, kyc, tail = self._keyed(b"holder\x00"), self._keyed(b"kyc\x00"), self._keyed(b"tail\x00")
        return (
            text(mac(*holder, id_number.encode())),
            text(mac(*kyc, f"{id_number}\x00{normalised}".encode())),
            text(mac(*tail, f"{number}\x00{id_number[-6:]}".encode())),
        )

    def tail(self, number: int, id_number: str) -> str:
        """A phone number with the last six digits of its holder's ID."""
        return self._mac(b"tail\x00", f"{number}\x00{id_number[-6:]}".encode())

    def code(self, verification_id: str, code: str) -> str:
        """A one-time SMS code, bound to its verification."""
        return self._mac(b"code\x00", f"{verification_id}\x00{code}".encode())

    def tenure_ref(self, holder: str, number: int, seq: int) -> str:
        """An opaque name for one tenure, meaningful only to its own holder."""
        return self._mac(b"tenure-ref\x00", f"{holder}\x00{number}\x00{seq}".encode())

    def client(self, address: str) -> str:
        """A client's network address, for rate limits without keeping addresses."""
        return self._mac(b"client\x00", address.encode())

    def number(self, number: int) -> str:
        """A phone number, for logs that must not list numbers in the clear."""
        return self._mac(b"number\x00", str(number).encode())
