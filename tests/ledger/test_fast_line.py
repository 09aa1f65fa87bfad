"""The compiled reader of the common event reads it as the parser does.

An import's NDJSON lines reach ``EventParser.parse`` undecoded, and the common line (the
usual keys, no escapes, a plain number, a compact ID, a name of CJK ideographs) is read
in C by ``FastLine``; so are the fields of a common event already decoded (a CSV row's,
a JSON array's item). Every other is parsed in Python alone (``parse_decoded``).
Whatever the line or the event, the parser must give the same event, or the same
refusal, both ways.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.factories import id_number
from tongcha.kit.digests import Digester
from tongcha.ledger.parse import (
    EARLIEST,
    EventParser,
    Rejection,
    csv_events,
    csv_header,
    csv_shape,
    decoded,
    steady_offset,
)
from tongcha.ledger.replay import Event, EventType

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
ZONES = ["Asia/Shanghai", "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]
KINDS = ["activated", "cancelled", "transferred", "suspended", "resumed", "ported", "ACTIVATED", ""]
MOBILE_PREFIXES = ["138", "139", "150", "166", "177", "187", "199", "145", "162"]


def parser(zone: str = "Asia/Shanghai") -> EventParser:
    return EventParser(1, {"CMCC": 1, "CUCC": 2}, Digester(b"test key", 3), ZoneInfo(zone), NOW, SKEW)


def both_ways(line: bytes, zone: str = "Asia/Shanghai") -> tuple[Event | Rejection, Event | Rejection]:
    """The line as an import gives it to the parser, and the line decoded first."""
    return parser(zone).parse((7, line)), parser(zone).parse_decoded(decoded(7, line))


# ----- lines near the common one and far from it ---------------------------------------

event_ids = st.sampled_from(
    ["e1", "CMCC-000123", " x", "x" * 128, "x" * 129, "", " ", "é1", "a\x7f", "a\tb"]
) | st.text(max_size=10)
numbers = (
    st.from_regex(r"(\+86)?1[0-9]{10}", fullmatch=True)
    | st.builds(lambda p, rest: f"+86{p}{rest:08d}", st.sampled_from(MOBILE_PREFIXES), st.integers(0, 10**8 - 1))
    | st.sampled_from(["+86138001380001", "+861380013800", "+86 13800138000", "１３８００１３８０００", "+12025550100"])
)
_LATEST = NOW + SKEW


TIME_BENDS = {
    "second 60": lambda t: t[:17] + "60" + t[19:],
    "minute 60": lambda t: t[:14] + "60" + t[16:],
    "hour 24": lambda t: t[:11] + "24" + t[13:],
    "day 0": lambda t: t[:8] + "00" + t[10:],
    "30 February": lambda t: t[:5] + "02-30" + t[10:],
    "month 13": lambda t: t[:5] + "13" + t[7:],
    "7 fraction digits": lambda t: t[:19] + ".1234567" + t[19:].lstrip(".0123456789"),
    "1 fraction digit": lambda t: t[:19] + ".5" + t[19:].lstrip(".0123456789"),
    "a bare point": lambda t: t[:19] + "." + t[19:].lstrip(".0123456789"),
    "offset of 24 hours": lambda t: t[:19] + "+24:00",
    "offset without colon": lambda t: t[:19] + "+0800",
    "offset in hours": lambda t: t[:19] + "+08",
    "lower-case z": lambda t: t[:19] + "z",
    "no offset": lambda t: t[:19],
    "a space for T": lambda t: t[:10] + " " + t[11:],
}


@st.composite
def times(draw: st.DrawFn) -> str:
    """RFC 3339 times around the bounds the parser keeps, some bent one way."""
    near = draw(
        st.sampled_from(
            [
                None,
                None,
                _LATEST,
                EARLIEST,
                datetime(1991, 9, 14, 17, 0, tzinfo=UTC),
                datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
            ]
        )
    )
    if near is None:
        at = draw(st.datetimes(datetime(1979, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)))
    else:
        at = near + timedelta(microseconds=draw(st.sampled_from([-1, 0, 1, -(10**6), 10**6, 3_600_000_000])))
    offset = timedelta(minutes=draw(st.sampled_from([0, 0, 480, -300, 330, -1439, 1439])))
    text = (
        (at + offset)
        .replace(tzinfo=None)
        .isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds", "microseconds"])))
    )
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    text += "Z" if not minutes and draw(st.booleans()) else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    if draw(st.booleans()):
        text = TIME_BENDS[draw(st.sampled_from(sorted(TIME_BENDS)))](text)
    return text


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    today = NOW.astimezone(ZoneInfo("Asia/Shanghai")).date()
    born = draw(
        st.sampled_from(
            [today, today + timedelta(days=1), today - timedelta(days=1), date(1880, 1, 1), date(1879, 12, 31)]
        )
        | st.dates(date(1870, 1, 1), date(2030, 12, 31))
    )
    written = id_number(region="110105", born=born.strftime("%Y%m%d"), serial=draw(st.integers(0, 999)))
    bent = draw(st.sampled_from(["as is", "as is", "as is", "check", "lower", "short", "month 13", "day 32"]))
    if bent == "check":
        written = written[:-1] + ("0" if written[-1] != "0" else "1")
    elif bent == "lower":
        written = written.lower()
    elif bent == "short":
        written = written[:-1]
    elif bent == "month 13":
        written = written[:10] + "13" + written[12:]
    elif bent == "day 32":
        written = written[:12] + "32" + written[14:]
    return written


names = st.text(
    st.sampled_from(
        ["张", "伟", "李", "\u4e00", "\u9fff", "\u4dff", "\ua000", "\u3400", "a", " ", "·", "\u3000", "\x00", "é"]
    ),
    min_size=0,
    max_size=6,
) | st.sampled_from(["张" * 100, "张" * 101, "王芳", "欧阳娜娜"])


COMMON_KINDS = ("activated", "cancelled", "transferred", "suspended", "resumed")


@st.composite
def common_events(draw: st.DrawFn, kinds: tuple[str, ...] = COMMON_KINDS) -> dict[str, Any]:
    """An event of the shape nearly every line of a carrier's file has."""
    kind = draw(st.sampled_from(kinds))
    at = draw(st.datetimes(datetime(1991, 9, 15), datetime(2026, 11, 23), timezones=st.just(UTC)))
    event: dict[str, Any] = {
        # printable ASCII that JSON writes unescaped
        "event_id": draw(
            st.text(
                st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
                min_size=1,
                max_size=128,
            )
        ),
        "type": kind,
        "number": f"+86{draw(st.sampled_from(MOBILE_PREFIXES))}{draw(st.integers(0, 10**8 - 1)):08d}",
        "occurred_at": at.isoformat().replace("+00:00", draw(st.sampled_from(["Z", "+00:00"]))),
    }
    if kind in ("activated", "transferred"):
        born = draw(st.dates(date(1900, 1, 1), date(2026, 11, 23)))
        event["holder"] = {
            "id_number": id_number(born=born.strftime("%Y%m%d"), serial=draw(st.integers(0, 999))),
            "name": draw(st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=100)),
        }
    return event


def written(draw: st.DrawFn, event: dict[str, Any]) -> bytes:
    """The event as a compact NDJSON line, its keys in any order."""
    order = draw(st.permutations(list(event)))
    return (json.dumps({k: event[k] for k in order}, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


BENDS = ["event_id", "type", "number", "occurred_at", "id_number", "name", "holder", "keys", "text"]


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """A common line bent in one or two ways, each near what the reader must refuse."""
    bends = draw(st.lists(st.sampled_from(BENDS), min_size=1, max_size=2, unique=True))
    # A holder's fields are bent where the event has a holder (elsewhere it is not read).
    event = draw(common_events(("activated", "transferred") if {"id_number", "name"} & set(bends) else COMMON_KINDS))
    holder: Any = event.get("holder") or {"id_number": id_number(), "name": "王芳"}
    if "event_id" in bends:
        event["event_id"] = draw(event_ids)
    if "type" in bends:
        event["type"] = draw(st.sampled_from(KINDS))
        if event["type"] == "ported" and draw(st.booleans()):
            event["to_carrier"] = draw(st.sampled_from(["CUCC", "NOPE", ""]))
    if "number" in bends:
        event["number"] = draw(numbers)
    if "occurred_at" in bends:
        event["occurred_at"] = draw(times())
    if "id_number" in bends:
        holder = event["holder"] = {**holder, "id_number": draw(id_numbers())}
    if "name" in bends:
        holder = event["holder"] = {**holder, "name": draw(names)}
    if "holder" in bends:
        event["holder"] = draw(
            st.sampled_from([None, "holder", {"id_number": holder["id_number"]}, {**holder, "x": 1}, holder])
        )
        if draw(st.booleans()):
            event.pop("holder")
    if "keys" in bends:
        if draw(st.booleans()):
            event.pop(draw(st.sampled_from(list(event))))
        else:
            event[draw(st.sampled_from(["note", "number", "event_id", "to_carrier"]))] = draw(
                st.sampled_from([1, None, "x", [1], "CUCC"])
            )
    if "text" not in bends:
        return written(draw, event)
    text = json.dumps(
        event, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    )
    text = draw(
        st.sampled_from(
            [
                text,
                text[:-1] + ',"type":"cancelled"}',  # a key twice: JSON takes the last
                text[:-1],
                text + "x",
                "[" + text + "]",
                text.replace('"', "'", 2),
                text.replace('"type"', '"ty\\u0070e"'),
                " " + text,
            ]
        )
    )
    return (text + draw(st.sampled_from(["", "\n", "\r\n", " \n", "\n\n", "\r"]))).encode("utf-8", "surrogatepass")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines(), st.sampled_from(ZONES) | st.just("Asia/Shanghai"))
@example(b'{"event_id":"e1","type":"activated","number":"+8613800138000","occurred_at":"2020-01-01T10:00:00+08:00",'
         b'"holder":{"id_number":"' + id_number().encode() + '","name":"张伟"}}'.encode(), "Asia/Shanghai")  # fmt: skip
def test_any_line_gives_the_same_event_or_refusal_read_at_once_or_decoded_first(line: bytes, zone: str) -> None:
    fast, decoded_first = both_ways(line, zone)
    assert fast == decoded_first
    if isinstance(fast, Event):
        assert type(fast.type) is EventType
        assert fast.occurred_at.tzinfo is UTC


# ----- the common line is read in C ------------------------------------------------------


@st.composite
def common_lines(draw: st.DrawFn) -> tuple[bytes, str]:
    event = draw(common_events())
    return written(draw, event), event["type"]


@settings(max_examples=500, deadline=None)
@given(common_lines())
def test_the_common_line_is_read_in_c_as_the_parser_reads_it(case: tuple[bytes, str]) -> None:
    line, kind = case
    event = parser()._fast_line()(line, 1)
    assert event is not None, "the common line fell back to the slow path"
    assert event == parser().parse_decoded(decoded(1, line))
    assert (event.holder_digest is not None) == (kind in ("activated", "transferred"))


@st.composite
def damaged_lines(draw: st.DrawFn) -> bytes:
    """A common line with a few bytes changed, put in or taken out, anywhere."""
    line = bytearray(written(draw, draw(common_events())))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(line)))
        how = draw(st.sampled_from(["change", "insert", "delete"]))
        byte = draw(st.integers(0, 255) | st.sampled_from(list(b'{}[]":,\\ 0X\x00\xe4\xb8\x80')))
        if how == "insert":
            line.insert(at, byte)
        elif at < len(line):
            if how == "change":
                line[at] = byte
            else:
                del line[at]
    return bytes(line)


@settings(max_examples=1000, deadline=None)
@given(damaged_lines() | st.binary(max_size=300))
def test_a_damaged_line_or_any_bytes_read_alike_both_ways(line: bytes) -> None:
    fast, decoded_first = both_ways(line)
    assert fast == decoded_first


def test_a_holders_digests_read_in_c_are_those_a_citizens_form_gives() -> None:
    digester = Digester(b"test key", 3)
    line = (
        '{"event_id":"e1","type":"activated","number":"+8613800138000",'
        f'"occurred_at":"2020-01-01T10:00:00+08:00","holder":{{"id_number":"{id_number()}","name":"王芳"}}}}'
    ).encode()
    event = parser()._fast_line()(line, 1)
    assert event is not None
    assert event.holder_digest == digester.holder(id_number())
    assert event.kyc_digest == digester.kyc(id_number(), "王芳")
    assert event.tail_digest == digester.tail(13800138000, id_number())
    assert event.day == date(2020, 1, 1) and event.number == 13800138000


# ----- the time zone's steady offset ----------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
def test_a_zones_offset_is_steady_from_the_moment_found_and_not_before(zone: str) -> None:
    tz = ZoneInfo(zone)
    until = date(2026, 11, 25)
    since, offset = steady_offset(tz, until)
    end = datetime(2026, 11, 25, tzinfo=UTC)
    assert since.astimezone(tz).utcoffset() == offset
    step = (end - since) / 997
    assert all((since + step * i).astimezone(tz).utcoffset() == offset for i in range(998))
    if since > EARLIEST:
        assert (since - timedelta(microseconds=1)).astimezone(tz).utcoffset() != offset


def test_beijing_time_has_been_steady_since_summer_time_ended_in_1991() -> None:
    since, offset = steady_offset(ZoneInfo("Asia/Shanghai"), date(2026, 11, 25))
    assert offset == timedelta(hours=8)
    # Summer time ended at 02:00 (+09:00) on 15 September 1991: 17:00 UTC the day before.
    assert since == datetime(1991, 9, 14, 17, 0, tzinfo=UTC)


def line_of(**fields: Any) -> bytes:
    """A common activation, with some of its fields (holder's too) written otherwise."""
    holder = {"id_number": fields.pop("id_number", id_number()), "name": fields.pop("name", "王芳")}
    event = {
        "event_id": "e1",
        "type": "activated",
        "number": "+8613800138000",
        "occurred_at": "2020-01-01T10:00:00+08:00",
        "holder": holder,
        **fields,
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def _micro_text(at: datetime) -> str:
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


_TODAY = NOW.astimezone(ZoneInfo("Asia/Shanghai")).date()


@pytest.mark.parametrize(
    ("line", "zone", "accepted"),
    [
        (line_of(occurred_at=_micro_text(_LATEST)), "Asia/Shanghai", True),
        (line_of(occurred_at=_micro_text(_LATEST + timedelta(microseconds=1))), "Asia/Shanghai", False),
        (line_of(occurred_at=_micro_text(EARLIEST)), "UTC", True),
        (line_of(occurred_at=_micro_text(EARLIEST - timedelta(microseconds=1))), "UTC", False),
        (line_of(occurred_at="1991-09-14T16:59:59.999999Z"), "Asia/Shanghai", True),  # summer time: +09:00
        (line_of(occurred_at="2020-01-01T10:00:59+08:00"), "Asia/Shanghai", True),
        (line_of(occurred_at="2020-01-01T10:00:60+08:00"), "Asia/Shanghai", False),
        (line_of(occurred_at="2020-01-01T10:60:00+08:00"), "Asia/Shanghai", False),
        (line_of(occurred_at="2020-01-01T24:00:00+08:00"), "Asia/Shanghai", False),
        (line_of(occurred_at="2020-02-29T10:00:00+08:00"), "Asia/Shanghai", True),
        (line_of(occurred_at="2021-02-29T10:00:00+08:00"), "Asia/Shanghai", False),
        (line_of(occurred_at="2020-01-01T10:00:00+23:59"), "Asia/Shanghai", True),
        (line_of(occurred_at="2020-01-01T10:00:00+24:00"), "Asia/Shanghai", False),
        (line_of(occurred_at="2020-01-01T10:00:00.1234567+08:00"), "Asia/Shanghai", True),
        (line_of(id_number=id_number(born=_TODAY.strftime("%Y%m%d"))), "Asia/Shanghai", True),
        (line_of(id_number=id_number(born=(_TODAY + timedelta(days=1)).strftime("%Y%m%d"))), "Asia/Shanghai", False),
        (line_of(id_number=id_number(born="18800101")), "Asia/Shanghai", True),
        (line_of(id_number=id_number(born="18791231")), "Asia/Shanghai", False),
        (line_of(id_number=id_number(serial=8)), "Asia/Shanghai", True),  # check character X
        (line_of(id_number=id_number(serial=8)[:-1] + "x"), "Asia/Shanghai", True),
        (line_of(id_number=id_number()[:-1] + "0"), "Asia/Shanghai", False),
        (line_of(name="张" * 100), "Asia/Shanghai", True),
        (line_of(name="张" * 101), "Asia/Shanghai", False),
        (line_of(name="\u4e00\u9fff"), "Asia/Shanghai", True),
        (line_of(name="\u4dff\ua000"), "Asia/Shanghai", True),
        (line_of(name="张\x00"), "Asia/Shanghai", False),
        (line_of(event_id="x" * 128), "Asia/Shanghai", True),
        (line_of(event_id="x" * 129), "Asia/Shanghai", False),
        (line_of(event_id="   "), "Asia/Shanghai", False),
        (line_of(event_id="a\x7f"), "Asia/Shanghai", False),
        (line_of(number="+8613800138000"), "Asia/Shanghai", True),
        (line_of(number="13800138000"), "Asia/Shanghai", True),
        (line_of(number="+8612000138000"), "Asia/Shanghai", False),
        (line_of(number="+8623800138000"), "Asia/Shanghai", False),
        (line_of(number="+86138001380000"), "Asia/Shanghai", False),
    ],
)
def test_lines_at_the_edges_of_each_rule_read_alike_both_ways(line: bytes, zone: str, accepted: bool) -> None:
    fast, decoded_first = both_ways(line, zone)
    assert fast == decoded_first
    assert isinstance(fast, Event) is accepted


def test_a_reader_made_without_its_settings_refuses_to_read_rather_than_crash() -> None:
    from tongcha.ledger._native import FastLine

    bare = FastLine.__new__(FastLine)
    with pytest.raises(RuntimeError):
        bare(line_of(), 1)
    with pytest.raises(TypeError):
        parser()._fast_line()("not bytes", 1)  # type: ignore[arg-type]


# ----- events already decoded: a CSV row's, a JSON array's item ----------------------


def decoded_ways(event: Any, zone: str = "Asia/Shanghai") -> tuple[Event | Rejection, Event | Rejection]:
    """The event through ``parse`` (its fields read in C where they can be) and in Python alone."""
    return parser(zone).parse(event), parser(zone).parse_decoded(event)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines(), st.sampled_from(ZONES) | st.just("Asia/Shanghai"))
def test_any_decoded_event_gives_the_same_event_or_refusal_read_in_c_or_in_python(line: bytes, zone: str) -> None:
    event = decoded(7, line)
    fast, slow = decoded_ways(event, zone)
    assert fast == slow
    if isinstance(fast, Event):
        assert type(fast.type) is EventType and fast.occurred_at.tzinfo is UTC


def csv_text(event: dict[str, Any]) -> str:
    holder = event.get("holder") or {}
    row = [event.get(k, "") for k in ("event_id", "type", "number", "occurred_at")]
    row += [holder.get("id_number", ""), holder.get("name", ""), event.get("to_carrier", "")]
    return "event_id,type,number,occurred_at,id_number,name,to_carrier\n" + ",".join(map(str, row)) + "\n"


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(common_events(), st.sampled_from(["as is", "surrogate", "holder on another kind", "spaced", "lower x"]))
def test_a_csv_row_gives_the_same_event_or_refusal_read_in_c_or_in_python(event: dict[str, Any], bend: str) -> None:
    event["event_id"] = event["event_id"].replace(",", ";")  # a comma would be a field of its own
    text = csv_text(event)
    if bend == "surrogate":  # a byte that is not UTF-8, as the import reads it
        text = text.replace(event["event_id"], event["event_id"] + "\udcff", 1)
    elif bend == "holder on another kind" and "holder" not in event:
        text = text.replace(",,\n", "," + id_number() + ",王芳,\n")
    elif bend == "spaced":
        text = text.replace(",+86", ", +86")
    elif bend == "lower x":
        text = text.replace("X,", "x,")
    (row,) = list(csv_events(io.StringIO(text)))
    fast, slow = decoded_ways(row)
    assert fast == slow
    if bend == "as is":
        assert parser()._fast_line().fields(row, 1) is not None, "the common row fell back to Python"
    # The same row as a plain line, as a parallel import's job reads it (in C).
    header, line = text.encode("utf-8", "surrogateescape").splitlines()
    shape = csv_header(header.decode("utf-8", "surrogateescape").split(","))
    if isinstance(shape, Rejection):  # the bend fell on the header
        return
    index, width = shape
    as_line = parser().parse((2, line + draw_ending(bend), csv_shape(index, width)))
    assert as_line == slow
    if bend == "as is":
        assert parser()._fast_line().csv(line, csv_shape(index, width), 1) is not None, "fell back to Python"
    # The same line with every field quoted, as some exporters write them: read in C alike.
    if b'"' in line:  # a quote in a field would have to be doubled, which C leaves to Python
        return
    quoted = b",".join(b'"' + field + b'"' for field in line.split(b","))
    assert parser().parse((2, quoted + draw_ending(bend), csv_shape(index, width))) == slow
    if bend == "as is":
        assert parser()._fast_line().csv(quoted, csv_shape(index, width), 1) is not None, "quoted: fell back"


def draw_ending(bend: str) -> bytes:
    """A line's end as a job is given it: without its newline, with a carriage return or not."""
    return b"\r" if bend in ("spaced", "lower x") else b""


def test_a_decoded_event_of_another_type_than_dict_or_str_values_is_left_to_python() -> None:
    class Row(dict[str, Any]):
        pass

    event = json.loads(line_of())
    assert parser()._fast_line().fields(event, 1) is not None
    assert parser()._fast_line().fields(Row(event), 1) is None
    assert parser()._fast_line().fields({**event, "number": 13800138000}, 1) is None
    fast, slow = decoded_ways({**event, "number": 13800138000})
    assert fast == slow and isinstance(fast, Event)  # the parser takes a number as an integer too


# ----- a chunk read in one call ------------------------------------------------------------


@st.composite
def items_of_a_stream(draw: st.DrawFn) -> list[Any]:
    """What a stream gives the parser: numbered lines, decoded events and refusals made
    already, some of them again (a carrier's repeats), in any order."""
    lines_drawn = draw(st.lists(lines() | damaged_lines() | st.binary(max_size=60), min_size=1, max_size=12))
    items: list[Any] = []
    for lineno, line in enumerate(lines_drawn, start=1):
        way = draw(st.sampled_from(["line", "line", "decoded", "refused"]))
        if way == "line":
            items.append((lineno, line))
        elif way == "decoded":
            items.append(decoded(lineno, line))
        else:
            items.append(Rejection(None, "INVALID_ARGUMENT", "malformed", f"line {lineno} is not JSON"))
    repeats = draw(st.lists(st.sampled_from(items), max_size=6))
    for item in repeats:
        items.insert(draw(st.integers(0, len(items))), item)
    return items


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items_of_a_stream(), st.integers(1, 8))
def test_a_stream_read_a_chunk_at_a_call_gives_what_it_gives_an_item_at_a_call(items: list[Any], size: int) -> None:
    from tongcha.ledger.service import ParsedStream

    one_by_one = parser()
    events: list[Event] = []
    rejected: list[Rejection] = []
    duplicates = 0
    seen: set[str] = set()
    for item in items:
        event = one_by_one.parse(item)
        if isinstance(event, Rejection):
            rejected.append(event)
        elif event.event_id in seen:
            duplicates += 1
        else:
            seen.add(event.event_id)
            events.append(event)

    chunked = parser()
    stream = ParsedStream(items, chunked, size)
    try:
        chunks = list(stream)
    finally:
        stream.close()
    assert [e for c in chunks for e in c.events] == events  # arrivals, digests and all
    assert [r for c in chunks for r in c.rejected] == rejected
    assert sum(c.duplicates for c in chunks) == duplicates
    assert chunked.arrival == one_by_one.arrival == len(items)


def test_reading_many_stops_at_the_first_item_it_leaves_and_counts_from_the_arrival_it_is_given() -> None:
    line = b'{"event_id":"e1","type":"cancelled","number":"+8613800138000","occurred_at":"2024-01-01T10:00:00+08:00"}'
    items: list[Any] = [(1, line), (2, line), (3, line.replace(b"e1", b"e2")), (4, b"not JSON"), (5, line)]
    reader = parser()
    seen: set[str] = set()
    events: list[Event] = []
    assert reader.parse_many(items, 0, seen, events) == (3, 1)
    assert [(e.event_id, e.arrival) for e in events] == [("e1", 1), ("e2", 3)]
    assert seen == {"e1", "e2"} and reader.arrival == 3
    assert isinstance(reader.parse(items[3]), Rejection)
    assert reader.parse_many(items, 4, seen, events) == (5, 1)  # e1 again
    assert reader.arrival == 5 and len(events) == 2


def test_an_event_read_in_c_is_left_out_of_the_collectors_passes() -> None:
    """An import collects garbage after each commit; the events parsed ahead are not
    gone over, as they hold no container and can be in no reference cycle."""
    import gc

    line = b'{"event_id":"e1","type":"cancelled","number":"+8613800138000","occurred_at":"2024-01-01T10:00:00+08:00"}'
    event = parser().parse((1, line))
    assert isinstance(event, Event) and not gc.is_tracked(event)
    assert event == parser().parse_decoded(decoded(1, line))
