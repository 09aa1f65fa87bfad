"""China's working days: public holidays and adjusted working weekends (调休).

The calendar comes from the ``holidays`` package (``holidays.China``), which records
each year's State Council notice: the days off, and the weekend days that become
working days to pay for them (``weekend_workdays``). A year whose notice the package
does not have yet is its estimate: the statutory holidays, those on a weekend moved to
the next weekday, and no working weekends. An operator closes that gap with a small
override file (``TONGCHA_WORKDAYS_FILE``), one date a line::

    # 国务院办公厅关于2027年部分节假日安排的通知
    date,kind,note
    2027-02-06,holiday,春节
    2027-02-20,workday,春节调休

``kind`` is ``holiday`` (or 休) or ``workday`` (or 班). A JSON file holds the same as an
object: ``{"2027-02-06": "holiday", "2027-02-20": "workday"}``. The file wins over the
package, day by day.
"""

from __future__ import annotations

import csv
import json
import re
import threading
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import holidays

from tongcha.kit.settings import Settings

DayKind = Literal["holiday", "workday"]

_KINDS: dict[str, DayKind] = {"holiday": "holiday", "休": "holiday", "workday": "workday", "班": "workday"}
# date.fromisoformat also takes 20270101 and 2027-W05-6; the file must be unambiguous.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ONE_DAY = timedelta(days=1)


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The start of ``day`` in ``tz``: where a local day, and so a tenure's first day, begins."""
    return datetime.combine(day, time(0), tz)


class WorkdaysFileError(ValueError):
    """The override file cannot be used; the message names the file and the line."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        where = f"{path}" if line is None else f"{path}, line {line}"
        super().__init__(f"working-days file {where}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason


class WorkCalendar:
    """Which days are working days in mainland China.

    A day is a working day when the override file says ``workday``; otherwise not when
    it says ``holiday``; otherwise, per ``holidays.China``, a weekday that is not a
    public holiday, or a weekend day listed as an adjusted working day. Thread-safe:
    years are loaded from the package on first use, under a lock.
    """

    def __init__(self, overrides: Mapping[date, DayKind] | None = None) -> None:
        self._overrides: dict[date, DayKind] = dict(overrides or {})
        self._override_years = frozenset(day.year for day in self._overrides)
        self._years: dict[int, tuple[frozenset[date], frozenset[date]]] = {}
        self._lock = threading.Lock()

    def _year(self, year: int) -> tuple[frozenset[date], frozenset[date]]:
        """(days off, weekend working days) that the package lists for ``year``."""
        found = self._years.get(year)
        if found is None:
            with self._lock:
                found = self._years.get(year)
                if found is None:
                    package = holidays.country_holidays("CN", years=year)
                    days_off = frozenset(day for day in package if day.year == year)
                    # The package lists working weekends of neighbouring years too (a
                    # December Saturday worked for January's holiday); keep this year's.
                    workdays = frozenset(day for day in package.weekend_workdays if day.year == year)
                    found = (days_off, workdays)
                    self._years[year] = found
        return found

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` (a local calendar date) is a working day."""
        if isinstance(day, datetime):
            # A datetime is a date to Python but never equal to one: every lookup would
            # miss and every weekday would look like a working day.
            raise TypeError("is_working_day takes a date; convert a datetime to the hub's local date first")
        kind = self._overrides.get(day)
        if kind is not None:
            return kind == "workday"
        days_off, weekend_workdays = self._year(day.year)
        if day.weekday() >= 5:
            return day in weekend_workdays
        return day not in days_off

    def has_notice(self, year: int) -> bool:
        """Whether the year's adjusted working weekends are known (package or override file).

        When not, the year is the package's estimate and due dates in it may be a day or
        two early: the operator should add the State Council's notice to the file.
        """
        return year in self._override_years or bool(self._year(year)[1])

    def due_by(self, start: datetime, working_days: int, tz: tzinfo) -> datetime:
        """The end of the ``working_days``-th working day after the local day of ``start``.

        The rule: take the calendar date of ``start`` in ``tz``; that day never counts,
        whether or not it is a working day and whatever the hour (as in the Civil Code,
        art. 201: a period counted in days starts the day after). Count the working days
        after it; the due time is the last instant (23:59:59.999999) of the day where the
        count reaches ``working_days``, as an aware datetime in ``tz``. A request made on
        Friday evening with 2 working days is due at the end of Tuesday; one made on
        30 September 2025 is due at the end of 10 October, after the National Day week.
        """
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("due_by needs an aware start time")
        if working_days < 1:
            raise ValueError(f"working_days must be at least 1, not {working_days}")
        day = start.astimezone(tz).date()
        left = working_days
        while left:
            day += _ONE_DAY
            if self.is_working_day(day):
                left -= 1
        return datetime.combine(day, time.max, tzinfo=tz)

    def working_days_between(self, a: date, b: date) -> int:
        """The number of working days in (a, b]: after ``a``, up to and including ``b``.

        Negative when ``b`` is before ``a`` (how many working days late a thing is, read
        the other way), so that ``working_days_between(start, due_by(start, n).date())``
        is ``n``.
        """
        if isinstance(a, datetime) or isinstance(b, datetime):
            raise TypeError("working_days_between takes dates, not datetimes")
        if b < a:
            return -self.working_days_between(b, a)
        count = 0
        day = a
        while day < b:
            day += _ONE_DAY
            count += self.is_working_day(day)
        return count


def load_overrides(path: Path) -> dict[date, DayKind]:
    """Read an override file (``.json``, else CSV); raise ``WorkdaysFileError`` naming the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a CSV saved by Excel starts with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkdaysFileError(path, None, f"cannot read it ({exc.__class__.__name__}: {exc})") from None
    if path.suffix.lower() == ".json":
        return _parse_json(path, text)
    return _parse_csv(path, text)


def _entry(path: Path, line: int, raw_day: str, raw_kind: str) -> tuple[date, DayKind]:
    raw_day = raw_day.strip()
    if not _ISO_DATE.fullmatch(raw_day):
        raise WorkdaysFileError(path, line, f"{raw_day!r} is not a date written YYYY-MM-DD")
    try:
        day = date.fromisoformat(raw_day)
    except ValueError:
        raise WorkdaysFileError(path, line, f"{raw_day!r} is not a calendar date") from None
    kind = _KINDS.get(raw_kind.strip().lower())
    if kind is None:
        raise WorkdaysFileError(path, line, f"kind {raw_kind.strip()!r} is neither 'holiday' nor 'workday'")
    return day, kind


def _parse_csv(path: Path, text: str) -> dict[date, DayKind]:
    found: dict[date, DayKind] = {}
    seen_on: dict[date, int] = {}
    header_allowed = True
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cells = next(csv.reader([raw]))
        if header_allowed and cells and cells[0].strip().lower() == "date":
            header_allowed = False
            continue
        header_allowed = False
        if len(cells) < 2:
            raise WorkdaysFileError(path, line, f"expected 'date,kind[,note]', got {raw.strip()!r}")
        day, kind = _entry(path, line, cells[0], cells[1])
        if day in found and found[day] != kind:
            raise WorkdaysFileError(path, line, f"{day} is a {kind} here but a {found[day]} on line {seen_on[day]}")
        found[day] = kind
        seen_on.setdefault(day, line)
    return found


def _parse_json(path: Path, text: str) -> dict[date, DayKind]:
    def pairs(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return items  # keep duplicates visible: a dict would silently keep the last

    try:
        document = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise WorkdaysFileError(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    if not isinstance(document, list) or (document and not isinstance(document[0], tuple)):
        raise WorkdaysFileError(path, 1, 'expected an object like {"2027-02-06": "holiday"}')

    def line_of(key: str) -> int:
        # json does not report positions of values it parsed, so find the key's text.
        at = text.find(json.dumps(key))
        return text.count("\n", 0, at) + 1 if at >= 0 else 1

    found: dict[date, DayKind] = {}
    for key, value in document:
        if not isinstance(value, str):
            raise WorkdaysFileError(path, line_of(key), f"the kind of {key!r} must be a string")
        day, kind = _entry(path, line_of(key), key, value)
        if day in found:
            raise WorkdaysFileError(path, line_of(key), f"{day} is listed twice")
        found[day] = kind
    return found


@lru_cache(maxsize=8)
def _calendar_for(path: Path | None) -> WorkCalendar:
    return WorkCalendar(load_overrides(path) if path is not None else None)


def calendar_from_settings(settings: Settings) -> WorkCalendar:
    """The calendar for ``settings.workdays_file`` (or the package alone), one per file.

    The file is read once per process: a changed file takes effect on restart, so that
    every due date in a run comes from the same calendar. A bad file raises
    ``WorkdaysFileError`` here, at start-up, naming the line.
    """
    path = settings.workdays_file
    return _calendar_for(path.resolve() if path is not None else None)
