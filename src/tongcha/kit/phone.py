"""Mainland mobile numbers: parsed with ``phonenumbers``, kept as 11-digit integers."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import phonenumbers
from phonenumbers import PhoneNumberType

from tongcha.kit.errors import InvalidArgument

# phonenumbers' own pattern for mainland mobile numbers, compiled once: the common
# shapes (+86 and 11 digits, or 11 bare digits) are checked against it without the
# cost of a full parse; anything else goes through phonenumbers.parse.
_CN = phonenumbers.PhoneMetadata.metadata_for_region("CN")
assert _CN is not None and _CN.mobile is not None and _CN.mobile.national_number_pattern
MOBILE_PATTERN: str = _CN.mobile.national_number_pattern
_MOBILE = re.compile(f"(?:{MOBILE_PATTERN})")
# The common shapes themselves (the national number is group 1); ledger imports also
# route events to their jobs by it.
PLAIN_NUMBER = re.compile(r"(?:\+86)?(1[0-9]{10})")
# What a number may be written with: ASCII digits and the separators people put between
# them. phonenumbers.parse is lenient beyond that: it skips text before the digits
# ("abc13800138000"), reads vanity letters as digits ("1-800-FLOWERS"), drops
# extensions ("ext. 12") and takes digits of other scripts, so an ID number or a
# typo could pass for a phone number.
_WRITTEN = re.compile(r"[0-9 +\-().]+")


class InvalidNumber(InvalidArgument):
    pass


@lru_cache(maxsize=1)
def mobile_prefix_table() -> npt.NDArray[np.bool_]:
    """Whether each 6-digit prefix 100000..199999 starts a valid mobile number.

    Derived from phonenumbers' pattern, whose constraints all sit in the first six
    digits; the assertion keeps that true if the metadata ever changes shape.
    """
    low, high = _prefixes_matching(b"00000"), _prefixes_matching(b"99999")
    assert (low == high).all(), "mobile pattern is not prefix-only"
    table = np.zeros(200_000, dtype=np.bool_)
    table[100_000:] = low
    return table


_MOBILE_LINE = re.compile(f"^(?:{MOBILE_PATTERN})$".encode(), re.MULTILINE)


def _prefixes_matching(suffix: bytes) -> npt.NDArray[np.bool_]:
    """For each prefix 100000..199999, whether the prefix and ``suffix`` match the mobile
    pattern: the 100,000 numbers as lines of one text, the pattern's matches marked in
    it by one substitution. A match at a time cost twice as much, and each import job
    makes the table (docs/benchmarks.md §1, twelfth pass)."""
    prefixes = np.arange(100_000, 200_000)
    lines = np.empty((100_000, 12), np.uint8)
    lines[:, :6] = prefixes[:, None] // 10 ** np.arange(5, -1, -1) % 10 + ord("0")
    lines[:, 6:11] = np.frombuffer(suffix, np.uint8)
    lines[:, 11] = ord("\n")
    marked = _MOBILE_LINE.sub(b"#" * 11, lines.tobytes())
    matched: npt.NDArray[np.bool_] = np.frombuffer(marked, np.uint8).reshape(100_000, 12)[:, 0] == ord("#")
    return matched


def parse_mobile(raw: object, field: str = "number") -> int:
    """Return the 11-digit national number, or raise ``InvalidNumber`` naming ``field``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise InvalidNumber(f"{field} must be a string in E.164 form, like +8613800138000")
    fast = PLAIN_NUMBER.fullmatch(raw)
    if fast is not None:
        national = fast.group(1)
        if _MOBILE.fullmatch(national) is None:
            raise InvalidNumber(f"{field} is not a mainland China mobile number")
        return int(national)
    # Full-width digits, plus sign and spaces, as Chinese input methods type them, are
    # the same characters to a reader: NFKC makes them ASCII before the rule is applied.
    raw = unicodedata.normalize("NFKC", raw)
    if _WRITTEN.fullmatch(raw) is None:
        raise InvalidNumber(f"{field} is not a phone number: only digits, spaces and + - ( ) . are allowed")
    try:
        parsed = phonenumbers.parse(raw, "CN")
    except phonenumbers.NumberParseException:
        raise InvalidNumber(f"{field} is not a phone number") from None
    if parsed.country_code != 86 or not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(f"{field} is not a mainland China mobile number")
    if phonenumbers.number_type(parsed) not in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise InvalidNumber(f"{field} is not a mainland China mobile number")
    return int(str(parsed.national_number))


def e164(number: int) -> str:
    return f"+86{number}"
