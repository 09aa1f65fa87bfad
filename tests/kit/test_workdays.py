"""China's working days: holidays, adjusted working weekends, due dates, the override file."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tongcha.kit.settings import Settings
from tongcha.kit.workdays import WorkCalendar, WorkdaysFileError, calendar_from_settings, load_overrides

BEIJING = ZoneInfo("Asia/Shanghai")
CALENDAR = WorkCalendar()


def local(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BEIJING)


def end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=BEIJING)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(n) for n in range((last - first).days + 1)]


# ----- what the package knows -------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [
        date(2025, 1, 26),  # Sunday, worked for the Spring Festival
        date(2025, 2, 8),  # Saturday, worked for the Spring Festival
        date(2025, 4, 27),  # Sunday, worked for Labour Day
        date(2025, 9, 28),  # Sunday, worked for National Day
        date(2025, 10, 11),  # Saturday, worked for National Day
        date(2026, 1, 4),  # Sunday, worked for New Year
        date(2026, 2, 14),  # Saturday, worked for the Spring Festival
        date(2026, 2, 28),  # Saturday, worked for the Spring Festival
        date(2026, 5, 9),  # Saturday, worked for Labour Day
        date(2026, 9, 20),  # Sunday, worked for National Day
        date(2026, 10, 10),  # Saturday, worked for National Day
    ],
)
def test_adjusted_weekend_days_are_working_days(day: date) -> None:
    assert day.weekday() >= 5
    assert CALENDAR.is_working_day(day)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (date(2025, 1, 28), date(2025, 2, 4)),  # Spring Festival 2025
        (date(2025, 10, 1), date(2025, 10, 8)),  # National Day and Mid-Autumn 2025
        (date(2026, 1, 1), date(2026, 1, 3)),  # New Year 2026
        (date(2026, 2, 15), date(2026, 2, 23)),  # Spring Festival 2026
        (date(2026, 5, 1), date(2026, 5, 5)),  # Labour Day 2026
        (date(2026, 10, 1), date(2026, 10, 7)),  # National Day 2026
    ],
)
def test_holiday_weeks_have_no_working_day(first: date, last: date) -> None:
    assert [day for day in days(first, last) if CALENDAR.is_working_day(day)] == []


def test_ordinary_weekdays_work_and_ordinary_weekends_do_not() -> None:
    assert CALENDAR.is_working_day(date(2025, 10, 13))  # Monday
    assert not CALENDAR.is_working_day(date(2025, 10, 12))  # Sunday
    assert not CALENDAR.is_working_day(date(2026, 11, 21))  # Saturday


def test_the_package_covers_2025_and_2026_but_2027_is_an_estimate() -> None:
    assert CALENDAR.has_notice(2025) and CALENDAR.has_notice(2026)
    assert not CALENDAR.has_notice(2027)
    # The estimate still has 2027's statutory days off.
    assert not CALENDAR.is_working_day(date(2027, 10, 1))  # Friday, National Day
    assert not CALENDAR.is_working_day(date(2027, 2, 8))  # Monday, Spring Festival


def test_a_datetime_is_refused_where_a_date_is_meant() -> None:
    with pytest.raises(TypeError, match="local date"):
        CALENDAR.is_working_day(datetime(2025, 10, 1, 12, tzinfo=UTC))


# ----- due dates -----------------------------------------------------------------------


def test_friday_evening_with_two_working_days_is_due_at_the_end_of_tuesday() -> None:
    due = CALENDAR.due_by(local(2025, 11, 21, 20, 0), 2, BEIJING)
    assert due == end_of(date(2025, 11, 25))
    assert due.tzinfo is BEIJING and due.time() == time(23, 59, 59, 999999)


def test_the_start_day_is_the_local_day_not_the_utc_day() -> None:
    # Thursday 17:00 UTC is Friday 01:00 in Beijing: one working day later is Monday.
    start = datetime(2025, 11, 20, 17, 0, tzinfo=UTC)
    assert CALENDAR.due_by(start, 1, BEIJING) == end_of(date(2025, 11, 24))


def test_a_request_before_national_day_is_due_after_the_holiday_week() -> None:
    assert CALENDAR.due_by(local(2025, 9, 30, 10, 0), 2, BEIJING) == end_of(date(2025, 10, 10))
    assert CALENDAR.due_by(local(2026, 9, 30, 10, 0), 2, BEIJING) == end_of(date(2026, 10, 9))


def test_a_working_weekend_counts_towards_the_due_date() -> None:
    # Friday 26 September 2025, then Sunday 28 (worked) and Monday 29.
    assert CALENDAR.due_by(local(2025, 9, 26, 9, 0), 2, BEIJING) == end_of(date(2025, 9, 29))
    # Friday 13 February 2026: Saturday 14 is worked, then nine days off.
    assert CALENDAR.due_by(local(2026, 2, 13, 9, 0), 1, BEIJING) == end_of(date(2026, 2, 14))
    assert CALENDAR.due_by(local(2026, 2, 13, 9, 0), 2, BEIJING) == end_of(date(2026, 2, 24))


def test_five_working_days_from_a_holiday_start_from_the_first_working_day() -> None:
    # Made on 1 October 2025: 9, 10, 11 (Saturday, worked), 13, 14 October.
    assert CALENDAR.due_by(local(2025, 10, 1, 9, 0), 5, BEIJING) == end_of(date(2025, 10, 14))


def test_due_by_refuses_a_naive_start_and_a_count_below_one() -> None:
    with pytest.raises(ValueError, match="aware"):
        CALENDAR.due_by(datetime(2025, 11, 21, 20, 0), 2, BEIJING)
    with pytest.raises(ValueError, match="at least 1"):
        CALENDAR.due_by(local(2025, 11, 21, 20, 0), 0, BEIJING)


def test_working_days_between_counts_after_the_first_up_to_the_last() -> None:
    assert CALENDAR.working_days_between(date(2025, 9, 30), date(2025, 10, 10)) == 2
    assert CALENDAR.working_days_between(date(2025, 10, 10), date(2025, 9, 30)) == -2
    assert CALENDAR.working_days_between(date(2025, 10, 1), date(2025, 10, 1)) == 0


@settings(max_examples=300, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
    working_days=st.integers(min_value=1, max_value=30),
)
def test_due_by_lands_on_a_working_day_exactly_n_working_days_on(start: datetime, working_days: int) -> None:
    due = CALENDAR.due_by(start, working_days, BEIJING)
    start_day = start.astimezone(BEIJING).date()
    assert due > start
    assert due.tzinfo is BEIJING and due.time() == time.max
    assert CALENDAR.is_working_day(due.date())
    assert sum(CALENDAR.is_working_day(d) for d in days(start_day + timedelta(1), due.date())) == working_days
    assert CALENDAR.working_days_between(start_day, due.date()) == working_days


# ----- the override file ---------------------------------------------------------------

NOTICE_2027 = """\
# 国务院办公厅关于2027年部分节假日安排的通知 (an example, not the real notice)
date,kind,note
2027-02-11,holiday,春节
2027-02-20,workday,春节调休

2025-10-13,休,a correction the package does not have
"""


def test_an_override_file_adds_a_holiday_and_a_working_saturday(tmp_path: Path) -> None:
    path = tmp_path / "workdays.csv"
    path.write_text(NOTICE_2027, encoding="utf-8")
    calendar = WorkCalendar(load_overrides(path))
    assert CALENDAR.is_working_day(date(2027, 2, 11)) and not calendar.is_working_day(date(2027, 2, 11))
    assert not CALENDAR.is_working_day(date(2027, 2, 20)) and calendar.is_working_day(date(2027, 2, 20))
    assert not calendar.is_working_day(date(2025, 10, 13))  # the file wins over the package
    assert calendar.has_notice(2027)
    # Wednesday 10 February 2027 + 1: Thursday 11 is now a holiday, Friday 12 is next.
    assert calendar.due_by(local(2027, 2, 10, 9, 0), 1, BEIJING) == end_of(date(2027, 2, 12))


def test_an_override_file_in_json_works_the_same(tmp_path: Path) -> None:
    path = tmp_path / "workdays.json"
    path.write_text('{\n  "2027-02-11": "holiday",\n  "2027-02-20": "workday"\n}\n', encoding="utf-8")
    assert load_overrides(path) == {date(2027, 2, 11): "holiday", date(2027, 2, 20): "workday"}


def test_a_csv_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "workdays.csv"
    path.write_text("date,kind\n2027-02-20,workday\n", encoding="utf-8-sig")
    assert load_overrides(path) == {date(2027, 2, 20): "workday"}


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("date,kind\n2027-02-11,holiday\n2027-13-01,holiday\n", 3, "not a calendar date"),
        ("2027-02-11,holiday\n# comment\n11/02/2027,holiday\n", 3, "YYYY-MM-DD"),
        ("2027-02-11,holiday\n2027-02-12,vacation\n", 2, "neither 'holiday' nor 'workday'"),
        ("2027-02-11\n", 1, "expected 'date,kind"),
        ("2027-02-11,holiday\n\n2027-02-11,workday\n", 3, "on line 1"),
        ("2027-02-11,holiday\ndate,kind\n", 2, "YYYY-MM-DD"),  # a header only comes first
    ],
)
def test_a_malformed_csv_is_refused_naming_the_line(tmp_path: Path, content: str, line: int, reason: str) -> None:
    path = tmp_path / "workdays.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(WorkdaysFileError, match=reason) as caught:
        load_overrides(path)
    assert caught.value.line == line
    assert f"{path}, line {line}:" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ('{\n  "2027-02-11": "holiday",\n  "2027-02-12" "workday"\n}\n', 3, "not valid JSON"),
        ('{\n  "2027-02-11": "holiday",\n  "2027-02-12": 1\n}\n', 3, "must be a string"),
        ('{\n  "2027-02-11": "holiday",\n  "2027-02-11": "workday"\n}\n', 2, "listed twice"),
        ('["2027-02-11"]\n', 1, "expected an object"),
    ],
)
def test_a_malformed_json_file_is_refused_naming_the_line(tmp_path: Path, content: str, line: int, reason: str) -> None:
    path = tmp_path / "workdays.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(WorkdaysFileError, match=reason) as caught:
        load_overrides(path)
    assert caught.value.line == line


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkdaysFileError, match="cannot read"):
        load_overrides(tmp_path / "nowhere.csv")


# ----- from settings -------------------------------------------------------------------


def test_settings_read_the_file_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "workdays.csv"
    path.write_text(NOTICE_2027, encoding="utf-8")
    monkeypatch.setenv("TONGCHA_WORKDAYS_FILE", str(path))
    calendar = calendar_from_settings(Settings(_env_file=None))
    assert not calendar.is_working_day(date(2027, 2, 11))


def test_the_calendar_is_loaded_once_per_file(tmp_path: Path) -> None:
    path = tmp_path / "workdays.csv"
    path.write_text(NOTICE_2027, encoding="utf-8")
    first = calendar_from_settings(Settings(workdays_file=path))
    assert calendar_from_settings(Settings(workdays_file=path)) is first
    assert calendar_from_settings(Settings()) is not first
    assert calendar_from_settings(Settings()).is_working_day(date(2027, 2, 11))


def test_a_bad_file_fails_at_startup_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "workdays.csv"
    path.write_text("date,kind\n2027-02-30,holiday\n", encoding="utf-8")
    with pytest.raises(WorkdaysFileError, match=r"line 2: '2027-02-30' is not a calendar date"):
        calendar_from_settings(Settings(workdays_file=path))
