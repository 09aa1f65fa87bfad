"""Small builders for carrier events and holders."""

from __future__ import annotations

from typing import Any

from tongcha.kit.idcard import check_digit


def id_number(region: str = "110105", born: str = "19850312", serial: int = 123) -> str:
    first17 = f"{region}{born}{serial:03d}"
    return first17 + check_digit(first17)


ALICE = {"id_number": id_number(serial=101), "name": "张 伟"}
BOB = {"id_number": id_number(serial=202, born="19900101"), "name": "李娜"}
CAROL = {"id_number": id_number(serial=303, born="19770707"), "name": "王芳"}

_seq = 0


def ev(kind: str, number: str, day: str, holder: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """An event on ``day`` (YYYY-MM-DD) at 10:00 Beijing time, with a unique id."""
    global _seq
    _seq += 1
    event: dict[str, Any] = {
        "event_id": extra.pop("event_id", f"e{_seq}"),
        "type": kind,
        "number": number,
        "occurred_at": extra.pop("at", f"{day}T10:00:00+08:00"),
    }
    if holder is not None:
        event["holder"] = holder
    event.update(extra)
    return event
