"""Free text the hub stores or looks up.

PostgreSQL's text cannot hold a NUL character: a value with one fails the statement,
which the caller would see as a 500. Such input is refused at the edge instead, the
same on every database.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

NO_NUL = r"^[^\x00]*$"

Text = Annotated[str, StringConstraints(pattern=NO_NUL)]

# C0 and C1 control characters (NUL among them), DEL, and the Unicode line and
# paragraph separators. None belongs in a name or a reference to an account, and each
# can break a log line, a CSV cell or an SMS (and a NUL, PostgreSQL's statement; a JSON
# column takes it, so it would be stored and passed on to a platform).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _no_control_characters(value: str) -> str:
    if _CONTROL.search(value) is not None:
        # Said without the value: it may be a name.
        raise ValueError("must not contain control characters (such as NUL, a tab or a line break)")
    return value


OneLine = Annotated[str, AfterValidator(_no_control_characters)]
"""Text on one line with no control characters: a person's name, an account's ref."""
