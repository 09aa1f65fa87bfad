"""A binary COPY made whole in C (``_native.copy_rows``) stores in PostgreSQL what
psycopg's ``write_row`` stores of the same values, one row at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tongcha.ledger._native import copy_rows

TABLE = "(n bigint, i8 bigint, i4 integer, b boolean, d date, ts timestamptz, s text, k bigint, tag text)"
COLUMNS = "n, i8, i4, b, d, ts, s, k, tag"
TYPES = ("int8", "int4", "bool", "date", "timestamptz", "text")


@dataclass(slots=True)
class Row:
    i8: int | None
    i4: int | None
    b: bool | None
    d: date | None
    ts: datetime | None
    s: str | None


@pytest.fixture(scope="module")
def conn(pg_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_url) as connection:
        yield connection


def _fresh(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} {TABLE}")


def _stored(conn: psycopg.Connection[Any], name: str) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT {COLUMNS} FROM {name} ORDER BY n").fetchall()


def _columns(rows: list[Row], constant: int | None, tag: str) -> list[tuple[str, object]]:
    return [
        ("int8", list(range(len(rows)))),  # a list: each row's own item
        ("int8", "i8"),
        ("int4", "i4"),
        ("bool", "b"),
        ("date", "d"),
        ("timestamptz", "ts"),
        ("text", "s"),
        ("int8", constant),  # neither a str nor a list: the same for every row
        ("text", [tag] * len(rows)),
    ]


zones = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=8)),
        timezone(-timedelta(hours=3, minutes=30)),
        ZoneInfo("Asia/Shanghai"),
        ZoneInfo("America/New_York"),
        ZoneInfo("Australia/Lord_Howe"),
    ]
)
times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=60)
rows = st.builds(
    Row,
    st.none() | st.integers(-(2**63), 2**63 - 1),
    st.none() | st.integers(-(2**31), 2**31 - 1),
    st.none() | st.booleans(),
    st.none() | st.dates(),
    st.none() | times,
    st.none() | texts,
)


@settings(max_examples=60, deadline=None)
@example([Row(None, None, None, None, datetime(1935, 9, 29, 1, 0, tzinfo=ZoneInfo("America/New_York")), None)], 0, "")
@given(st.lists(rows, max_size=30), st.none() | st.integers(-(2**63), 2**63 - 1), texts)
def test_what_copy_rows_stores_is_what_write_row_stores(
    conn: psycopg.Connection[Any], made: list[Row], constant: int | None, tag: str
) -> None:
    _fresh(conn, "by_c")
    _fresh(conn, "by_rows")
    columns = _columns(made, constant, tag)
    with conn.cursor() as cur, cur.copy(f"COPY by_c ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(copy_rows(made, columns))
    with conn.cursor() as cur, cur.copy(f"COPY by_rows ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "int8", "int4", "bool", "date", "timestamptz", "text", "int8", "text"])
        for n, r in enumerate(made):
            copy.write_row((n, r.i8, r.i4, r.b, r.d, r.ts, r.s, constant, tag))
    stored = _stored(conn, "by_c")
    assert stored == _stored(conn, "by_rows")
    # As instants: Python holds a time that falls in a zone's repeated hour unequal to
    # the same instant in another zone (PEP 495), whatever their offsets say.
    instant = [r.ts.astimezone(UTC) if r.ts is not None else None for r in made]
    assert [(r.i8, r.i4, r.b, r.d, at, r.s) for r, at in zip(made, instant, strict=True)] == [
        (*row[1:5], row[5].astimezone(UTC) if row[5] is not None else None, row[6]) for row in stored
    ]
    assert all(row[7] == constant and row[8] == tag for row in stored)
    conn.rollback()


def test_no_rows_is_a_copy_of_nothing(conn: psycopg.Connection[Any]) -> None:
    _fresh(conn, "by_c")
    with conn.cursor() as cur, cur.copy(f"COPY by_c ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(copy_rows([], _columns([], 1, "x")))
    assert _stored(conn, "by_c") == []
    conn.rollback()


ONE = Row(1, 2, True, date(2026, 12, 4), datetime(2026, 12, 4, tzinfo=UTC), "text")


@pytest.mark.parametrize(
    ("column", "error", "message"),
    [
        (("int8", "s"), TypeError, "row 0, column 0: str is not COPYed as int8"),
        (("int4", "b"), TypeError, "bool is not COPYed as int4"),  # a bool is no number here
        (("int8", True), TypeError, "bool is not COPYed as int8"),
        (("bool", "i8"), TypeError, "int is not COPYed as bool"),
        (("date", "ts"), TypeError, "datetime is not COPYed as date"),
        (("timestamptz", "d"), TypeError, "date is not COPYed as timestamptz"),
        (("timestamptz", datetime(2026, 12, 4)), TypeError, "datetime is not COPYed as timestamptz"),  # naive
        (("text", "i8"), TypeError, "int is not COPYed as text"),
        (("int4", 2**31), OverflowError, "int4"),
        (("int8", 2**63), OverflowError, "too big"),
        (("text", ["\ud800"]), UnicodeEncodeError, "surrogates not allowed"),
        (("int8", "absent"), AttributeError, "absent"),
        (("int8", [1, 2]), ValueError, "column 0: 2 items for 1 rows"),
        (("numeric", 1), ValueError, "no binary COPY of type 'numeric'"),
        (["int8", 1], TypeError, "column 0: a (type, source) tuple"),
        (("int8",), TypeError, "column 0: a (type, source) tuple"),
    ],
)
def test_a_value_it_cannot_copy_is_said_before_anything_is_written(
    column: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        copy_rows([ONE], [column])  # type: ignore[list-item]
