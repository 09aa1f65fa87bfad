"""Resident ID numbers (居民身份证号), checked with python-stdnum's ``cn.ric``.

Only the checksum and the birth date are checked: the birth place table in stdnum
changes with every redistricting, and a carrier's record is not wrong because of it.
"""

from __future__ import annotations

import re
from datetime import date

from stdnum.cn import ric
from stdnum.util import isdigits

from tongcha.kit.errors import InvalidArgument

_COMPACT = re.compile(r"[0-9]{17}[0-9X]", re.ASCII)


class InvalidIdNumber(InvalidArgument):
    pass


def validate_id_number(raw: object, today: date) -> str:
    """Return the compact ID number, or raise without echoing any of it."""
    if not isinstance(raw, str):
        raise InvalidIdNumber("id_number must be a string")
    # Already compact (the common case): stdnum's compact would return it unchanged, and
    # it is 17 digits and a check character.
    if _COMPACT.fullmatch(raw):
        number = raw
    else:
        number = ric.compact(raw)
        if len(number) != 18 or not isdigits(number[:-1]):
            raise InvalidIdNumber("id_number must be 17 digits and a check character")
    if number[-1] != ric.calc_check_digit(number):
        raise InvalidIdNumber("id_number has a wrong check character")
    try:
        # What ric.get_birth_date does, without compacting the number a second time.
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidIdNumber("id_number has an impossible birth date") from None
    if born > today or born.year < 1880:
        raise InvalidIdNumber("id_number has an impossible birth date")
    return number


def check_digit(first17: str) -> str:
    """The check character for 17 digits (used by the synthetic ledger generator)."""
    return ric.calc_check_digit(first17 + "0")
