"""Turning what a carrier sent (JSON object or CSV row) into a well-formed ``Event``.

Every failure becomes a ``Rejection`` that names the field but never repeats an ID
number or a name.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import IO, Any
from zoneinfo import ZoneInfo

import orjson

from tongcha.kit import jsonio
from tongcha.kit.digests import Digester, normalise_name
from tongcha.kit.errors import ApiError
from tongcha.kit.idcard import validate_id_number
from tongcha.kit.phone import mobile_prefix_table, parse_mobile
from tongcha.ledger._native import FastLine, kind_names
from tongcha.ledger.replay import ACTIVATED, PORTED, TRANSFERRED, Event, EventType

EARLIEST = datetime(1980, 1, 1, tzinfo=UTC)
CSV_COLUMNS = ("event_id", "type", "number", "occurred_at", "id_number", "name", "to_carrier")
_TYPES = {t.value: t for t in EventType}
# How many written numbers a parser remembers (about 100 bytes each).
_NUMBERS_KEPT = 200_000


@dataclass(slots=True)
class Rejection:
    event_id: str | None
    code: str
    rule: str
    reason: str

    def as_dict(self) -> dict[str, str | None]:
        return {"event_id": self.event_id, "code": self.code, "rule": self.rule, "reason": self.reason}


def storable_event_id(event_id: str) -> bool:
    """Whether the ledger can keep and match this event id exactly as the carrier sent it.

    Printable means no control characters (PostgreSQL's text cannot hold NUL at all) and
    no line or paragraph separators, so an id reads the same in a log, a CSV or a list.
    """
    return 0 < len(event_id) <= 128 and event_id.isprintable() and not event_id.isspace()


class _Bad(Exception):
    def __init__(self, rule: str, reason: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(reason)
        self.rule, self.reason, self.code = rule, reason, code


class EventParser:
    def __init__(
        self,
        carrier_id: int,
        carrier_ids: Mapping[str, int],
        digester: Digester,
        tz: ZoneInfo,
        now: datetime,
        skew: timedelta,
    ) -> None:
        self.carrier_id = carrier_id
        self.carrier_ids = carrier_ids
        self.digester = digester
        self.tz = tz
        self.latest = now + skew
        self.today = now.astimezone(tz).date()
        self.arrival = 0
        self._numbers: dict[str, int] = {}
        self._fast: FastLine | None = None

    def parse(self, raw: Any) -> Event | Rejection:
        """An event decoded (a dict), a refusal already made, a numbered NDJSON line
        not yet decoded (``numbered_lines``), or a numbered plain CSV line, not blank,
        with its file's shape, ``(lineno, line, csv_shape(...))``.

        The common event is read in C by ``FastLine``: a line in one step, decoding
        included, or a decoded event's fields. Any other, and every one to refuse, is
        parsed in Python (``parse_decoded``), which makes every refusal."""
        fast = self._fast or self._fast_line()
        if raw.__class__ is tuple and len(raw) == 3:  # a plain CSV line (``csv_shape``)
            event = fast.csv(raw[1], raw[2], self.arrival + 1)
            if event is not None:
                self.arrival += 1
                return event
            index, width, _ = raw[2]
            row = csv_plain_row(index, width, raw[0], raw[1])
            raw = csv_event(*row) if row is not None and not isinstance(row, Rejection) else row
        elif raw.__class__ is tuple:
            event = fast(raw[1], self.arrival + 1)
            if event is not None:
                self.arrival += 1
                return event
            raw = decoded(*raw)
        if raw.__class__ is dict:
            event = fast.fields(raw, self.arrival + 1)
            if event is not None:
                self.arrival += 1
                return event
        return self.parse_decoded(raw)

    def parse_many(self, items: list[Any], start: int, seen: set[str], events: list[Event]) -> tuple[int, int]:
        """Parse ``items`` from ``start`` on, in order, while the compiled reader reads
        them; returns where it stopped (the first item for ``parse``, or the list's
        end) and how many duplicates it met. An event whose id is in ``seen`` is a
        duplicate; any other is appended to ``events`` and its id added to ``seen``.

        One call for a chunk's thousands of lines: a call of ``parse`` a line, and
        keeping the events in Python, took half again the reading's own time
        (docs/benchmarks.md §1, thirteenth pass)."""
        fast = self._fast or self._fast_line()
        stop, duplicates = fast.many(items, start, self.arrival, seen, events)
        self.arrival += stop - start
        return stop, duplicates

    def parse_decoded(self, raw: Any) -> Event | Rejection:
        """An event decoded, or a refusal already made, parsed in Python alone."""
        self.arrival += 1
        if isinstance(raw, Rejection):
            return raw
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        if not isinstance(event_id, str) or not storable_event_id(event_id):
            return Rejection(
                event_id if isinstance(event_id, str) else None,
                "INVALID_ARGUMENT",
                "bad_event_id",
                "event_id must be 1 to 128 printable characters, not all spaces",
            )
        try:
            return self._parse(event_id, raw)
        except _Bad as bad:
            return Rejection(event_id, bad.code, bad.rule, bad.reason)
        except ApiError as err:
            return Rejection(event_id, err.code, "bad_field", err.message)

    def prepare(self) -> None:
        """Make the compiled reader now rather than at the first line. Its tables (the
        mobile prefixes, the zone's last change) take about 0.15 s and are kept for the
        process: a parallel import makes them before it forks its jobs."""
        self._fast_line()

    def _fast_line(self) -> FastLine:
        """The compiled reader of this parser's common lines, made at its first line."""
        since, offset = steady_offset(self.tz, self.latest.date() + timedelta(days=2))
        self._fast = FastLine(
            event_type=Event,
            kinds=tuple(_TYPES[name] for name in kind_names()),
            carrier_id=self.carrier_id,
            key=self.digester.key,
            prefix=self.digester.prefix.encode(),
            mobile=mobile_prefix_table()[100_000:].tobytes(),
            earliest_us=_micros(EARLIEST),
            latest_us=_micros(self.latest),
            steady_since_us=_micros(since),
            offset_us=offset // timedelta(microseconds=1),
            today=(self.today.year, self.today.month, self.today.day),
        )
        return self._fast

    def _parse(self, event_id: str, raw: dict[str, Any]) -> Event:
        raw_type = raw.get("type")
        kind = _TYPES.get(raw_type) if raw_type.__class__ is str else None
        if kind is None:
            raise _Bad("bad_type", "type must be one of " + ", ".join(_TYPES))
        written = raw.get("number")
        # A file names each number several times (every event of it): the written form
        # is parsed once. Only strings are kept, and only numbers that parsed.
        number = self._numbers.get(written) if written.__class__ is str else None
        if number is None:
            number = parse_mobile(written)
            if written.__class__ is str and len(self._numbers) < _NUMBERS_KEPT:
                self._numbers[written] = number
        occurred_at = self._time(raw.get("occurred_at"))
        day = occurred_at.astimezone(self.tz).date()
        event = Event(
            self.carrier_id, event_id, kind, number, occurred_at, day, None, None, None, None, None, self.arrival
        )
        if kind is ACTIVATED or kind is TRANSFERRED:
            self._holder(event, raw.get("holder"))
        elif kind is PORTED:
            to_carrier = raw.get("to_carrier")
            if not isinstance(to_carrier, str) or not to_carrier:
                raise _Bad("bad_port", "a port needs to_carrier, the receiving carrier's code")
            to_id = self.carrier_ids.get(to_carrier)
            if to_id is None:
                raise _Bad("unknown_carrier", "to_carrier is not a registered carrier")
            event.to_carrier_id = to_id
        return event

    def _time(self, raw: object) -> datetime:
        if not isinstance(raw, str):
            raise _Bad("bad_time", "occurred_at must be an RFC 3339 time with offset")
        try:
            at = datetime.fromisoformat(raw)
        except ValueError:
            raise _Bad("bad_time", "occurred_at must be an RFC 3339 time with offset") from None
        if at.tzinfo is None:
            raise _Bad("bad_time", "occurred_at needs a UTC offset")
        if at > self.latest:
            raise _Bad("future_time", "occurred_at is in the future", "OUT_OF_RANGE")
        if at < EARLIEST:
            raise _Bad("past_time", "occurred_at is before 1980", "OUT_OF_RANGE")
        return at.astimezone(UTC)

    def _holder(self, event: Event, holder: object) -> None:
        if not isinstance(holder, dict):
            raise _Bad("bad_holder", f"{event.type.value} needs holder with id_number and name")
        id_number = validate_id_number(holder.get("id_number"), self.today)
        name = holder.get("name")
        if not isinstance(name, str) or not (normalised := normalise_name(name)) or len(normalised) > 100:
            raise _Bad("bad_name", "holder name must be 1 to 100 characters")
        if not normalised.isprintable():
            # A control character (NUL), or bytes of a CSV file that are not UTF-8 (read
            # with surrogateescape): not part of anyone's name, and not digestible.
            raise _Bad("bad_name", "holder name must be printable UTF-8 text")
        event.holder_digest, event.kyc_digest, event.tail_digest = self.digester.identity(
            id_number, normalised, event.number
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


@lru_cache(maxsize=8)
def steady_offset(tz: ZoneInfo, until: date) -> tuple[datetime, timedelta]:
    """The moment since when ``tz`` has kept the offset it has at the start of ``until``,
    and that offset: a day in ``tz`` is then the UTC time plus the offset.

    Found by looking back six hours at a time to 1980 (no zone changes its offset twice in
    six hours) and then halving the step to the microsecond. Asia/Shanghai has kept +08:00
    since September 1991. Kept per day: an import's parsers look it up once each."""
    later = datetime(until.year, until.month, until.day, tzinfo=UTC)
    offset = later.astimezone(tz).utcoffset()
    assert offset is not None
    step = timedelta(hours=6)
    while later > EARLIEST:
        earlier = later - step
        if earlier.astimezone(tz).utcoffset() != offset:
            # The change lies in (earlier, later]: halve the stretch down to a microsecond.
            while later - earlier > timedelta(microseconds=1):
                middle = earlier + (later - earlier) // 2
                if middle.astimezone(tz).utcoffset() == offset:
                    later = middle
                else:
                    earlier = middle
            return later, offset
        later = earlier
    return EARLIEST, offset


# ----- reading batches -------------------------------------------------------------


def ndjson_events(lines: Iterable[bytes]) -> Iterator[Any]:
    """Each non-blank line a JSON object; a line that is not one becomes a Rejection."""
    return ndjson_numbered(numbered_lines(lines))


def decoded(lineno: int, line: bytes) -> Any:
    """An NDJSON line's JSON object, or a Rejection when the line is not one."""
    try:
        obj = jsonio.loads(line)
    except orjson.JSONDecodeError:
        return Rejection(None, "INVALID_ARGUMENT", "malformed", f"line {lineno} is not JSON")
    if not isinstance(obj, dict):
        return Rejection(None, "INVALID_ARGUMENT", "malformed", f"line {lineno} is not a JSON object")
    return obj


def numbered_lines(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines with their numbers, a byte order mark at the start left out."""
    for lineno, line in enumerate(lines, start=1):
        if lineno == 1:
            line = line.removeprefix(codecs.BOM_UTF8)  # as Windows tools start UTF-8 files
        if line.strip():
            yield lineno, line


def ndjson_numbered(lines: Iterable[tuple[int, bytes]]) -> Iterator[Any]:
    """``ndjson_events`` of lines already numbered (some lines of a file, say)."""
    for lineno, line in lines:
        yield decoded(lineno, line)


# A CSV row of the right width, with where each known column is in it.
CsvRow = tuple[Mapping[str, int], list[str]]


def csv_events(text: IO[str]) -> Iterator[Any]:
    """Rows of ``event_id,type,number,occurred_at,id_number,name,to_carrier`` with a header."""
    for item in csv_rows(text):
        yield item if isinstance(item, Rejection) else csv_event(*item)


def csv_rows(text: IO[str]) -> Iterator[CsvRow | Rejection]:
    """``csv_events`` before each row is made an event (``csv_event``): the rows as
    lists, each with the header's columns, and a Rejection for a header or a row that
    cannot be read. A parallel import reads these, and its jobs make the events."""
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    head = csv_header(header)
    if isinstance(head, Rejection):
        yield head
        return
    yield from csv_records(reader, *head)


def csv_header(header: list[str]) -> tuple[dict[str, int], int] | Rejection:
    """The column of each field a CSV header names, and its width; or its refusal."""
    columns = [h.strip() for h in header]
    missing = [c for c in ("event_id", "type", "number", "occurred_at") if c not in columns]
    if missing:
        return Rejection(None, "INVALID_ARGUMENT", "malformed", "CSV header lacks " + ", ".join(missing))
    return {name: columns.index(name) for name in CSV_COLUMNS if name in columns}, len(columns)


def csv_records(
    reader: Iterator[list[str]], index: dict[str, int], width: int, lines_before: int = 0
) -> Iterator[CsvRow | Rejection]:
    """The rows ``reader`` (a csv reader) reads after the header (``csv_rows``), its
    lines numbered on from ``lines_before``."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            # A field over the csv module's limit (an unclosed quote runs on until it
            # is one): the reader skips the rest of that line and reads on.
            lineno = lines_before + reader.line_num  # type: ignore[attr-defined]
            yield Rejection(None, "INVALID_ARGUMENT", "malformed", f"line {lineno} is not a CSV row")
            continue
        if not row:
            continue
        if len(row) != width:
            yield _unlike_header(index, width, lines_before + reader.line_num, row)  # type: ignore[attr-defined]
            continue
        yield index, row


def csv_plain_row(index: dict[str, int], width: int, lineno: int, line: bytes) -> CsvRow | Rejection | None:
    """A plain line's row, as the csv module reads it (None for a blank line): a line
    without its newline, with no carriage return but one before the newline, shorter
    than the csv module's field size limit, and simple (``_native.csv_simple``): each
    field holds no quote, or is quoted whole and holds none inside. Its fields are then
    what lies between its commas, outside quotes, quotes taken off. A parallel import's
    jobs read such lines."""
    text = line.removesuffix(b"\r").decode("utf-8", "surrogateescape")
    if not text:
        return None
    row = text.split(",") if '"' not in text else next(csv.reader([text]))
    if len(row) != width:
        return _unlike_header(index, width, lineno, row)
    return index, row


# A CSV file's header as ``csv_plain_row`` and the compiled reader take it: its index and
# width, and the columns of event_id, type, number, occurred_at, id_number and name (-1
# where it has none).
CsvShape = tuple[dict[str, int], int, tuple[int, ...]]


def csv_shape(index: dict[str, int], width: int) -> CsvShape:
    columns = (*(index[name] for name in CSV_COLUMNS[:4]), index.get("id_number", -1), index.get("name", -1))
    return index, width, columns


def _unlike_header(index: dict[str, int], width: int, lineno: int, row: list[str]) -> Rejection:
    return Rejection(
        row[index["event_id"]] if len(row) > index["event_id"] else None,
        "INVALID_ARGUMENT",
        "malformed",
        f"line {lineno} has {len(row)} fields, the header has {width}",
    )


def csv_event(index: Mapping[str, int], row: list[str]) -> dict[str, Any]:
    """A CSV row (``csv_rows``) as the event it writes."""
    obj: dict[str, Any] = {name: row[i] for name, i in index.items()}
    id_number, name = obj.pop("id_number", ""), obj.pop("name", "")
    if id_number or name:
        obj["holder"] = {"id_number": id_number, "name": name}
    if not obj.get("to_carrier"):
        obj.pop("to_carrier", None)
    return obj


def json_array_events(body: bytes) -> list[Any]:
    """A JSON array body; raises InvalidArgument when it is not one."""
    from tongcha.kit.errors import InvalidArgument

    try:
        data = jsonio.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidArgument(f"body is not JSON: {err.msg} at position {err.pos}") from None
    if not isinstance(data, list):
        raise InvalidArgument("body must be a JSON array of events (or send application/x-ndjson)")
    return [
        item
        if isinstance(item, dict)
        else Rejection(None, "INVALID_ARGUMENT", "malformed", "an array item is not an object")
        for item in data
    ]


def sniff_format(path: str, head: bytes) -> str:
    """ "ndjson" or "csv": by the file's name, else by its first lines (``head``).

    A file whose first line is an object is NDJSON; one whose first line is a list of
    fields with no braces is CSV, its header. Otherwise (a first line that is neither,
    a broken line say) a file with objects among its first lines is NDJSON, so that only
    that line is refused, not the whole file as a CSV without its header."""
    lowered = path.lower()
    if lowered.endswith((".ndjson", ".jsonl", ".json")):
        return "ndjson"
    if lowered.endswith(".csv"):
        return "csv"
    lines = [line for line in (raw.strip() for raw in head.removeprefix(codecs.BOM_UTF8).splitlines()) if line]
    if not lines or lines[0].startswith(b"{"):
        return "ndjson" if lines else "csv"
    if b"," in lines[0] and b"{" not in lines[0]:
        return "csv"
    return "ndjson" if any(line.startswith(b"{") for line in lines) else "csv"
