"""Reading JSON a client sent, including text orjson refuses but JSON allows.

RFC 8259's grammar lets a string escape a lone surrogate (``"\\ud800"``); orjson refuses
the whole document over one, so a batch with one such value in one event was lost. The
stdlib reads it (the surrogate becomes a ``str`` that UTF-8 cannot encode), and the
field that holds it is refused on its own, as any other bad value is.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; orjson refuses them, and so does the fallback.
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes) -> Any:
    """``orjson.loads``, falling back to the stdlib only for an escaped lone surrogate.

    Raises ``orjson.JSONDecodeError`` (orjson's, with its message and position) for
    anything that is not JSON, as ``orjson.loads`` does.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        if "surrogate" not in err.msg:
            raise
        try:
            # Strict UTF-8: surrogates encoded as raw bytes are not UTF-8, and stay refused.
            return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise err from None


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def replace_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate as U+FFFD, as invalid UTF-8 bytes are read."""
    return text if is_utf8(text) else text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
