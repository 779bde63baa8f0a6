"""Schedule arithmetic: ticks, DST, queries far from the first run, and firing decisions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cassandra_backup.schedule import (
    InvalidSchedule,
    Recurrence,
    TickDecision,
    count_ticks_between,
    decide,
    latest_tick_at_or_before,
    local_display,
    next_tick_after,
    preview_lines,
    run_name,
    tick,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(
    first_run_date: str = "2012-05-03",
    first_run_time: str = "18:00:00",
    timezone: str = "GMT",
    interval: int = 1,
    interval_unit: str | None = "days",
) -> Recurrence:
    return Recurrence.parse(
        first_run_date=first_run_date,
        first_run_time=first_run_time,
        timezone=timezone,
        interval=interval,
        interval_unit=interval_unit,
    )


# (schedule fields, the first ticks in UTC). Berlin changes on 2026-03-29 at 02:00 CET and
# 2026-10-25 at 03:00 CEST; US/Eastern on 2026-03-08 at 02:00 EST and 2026-11-01 at 02:00 EDT.
TICK_SEQUENCES = [
    pytest.param(
        dict(interval=15, interval_unit="minutes"),
        ["2012-05-03 18:00", "2012-05-03 18:15", "2012-05-03 18:30"],
        id="every-15-minutes",
    ),
    pytest.param(
        dict(interval=6, interval_unit="hours"),
        ["2012-05-03 18:00", "2012-05-04 00:00", "2012-05-04 06:00"],
        id="every-6-hours-crosses-midnight",
    ),
    pytest.param(
        dict(interval=1, interval_unit="days"),
        ["2012-05-03 18:00", "2012-05-04 18:00", "2012-05-05 18:00"],
        id="daily-gmt",
    ),
    pytest.param(
        dict(interval=2, interval_unit="weeks"),
        ["2012-05-03 18:00", "2012-05-17 18:00", "2012-05-31 18:00"],
        id="fortnightly-gmt",
    ),
    pytest.param(
        dict(first_run_date="2026-03-27", timezone="Europe/Berlin"),
        ["2026-03-27 17:00", "2026-03-28 17:00", "2026-03-29 16:00", "2026-03-30 16:00"],
        id="berlin-daily-1800-stays-1800-into-summer-time",
    ),
    pytest.param(
        dict(first_run_date="2026-10-24", timezone="Europe/Berlin"),
        ["2026-10-24 16:00", "2026-10-25 17:00", "2026-10-26 17:00"],
        id="berlin-daily-1800-stays-1800-into-winter-time",
    ),
    pytest.param(
        dict(first_run_date="2026-03-28", first_run_time="02:30:00", timezone="Europe/Berlin"),
        ["2026-03-28 01:30", "2026-03-29 01:30", "2026-03-30 00:30"],
        id="berlin-daily-0230-in-spring-gap-runs-at-0330",
    ),
    pytest.param(
        dict(first_run_date="2026-10-24", first_run_time="02:30:00", timezone="Europe/Berlin"),
        ["2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30"],
        id="berlin-daily-0230-in-autumn-overlap-runs-at-first-occurrence",
    ),
    pytest.param(
        dict(
            first_run_date="2026-03-22",
            first_run_time="02:30:00",
            timezone="Europe/Berlin",
            interval_unit="weeks",
        ),
        ["2026-03-22 01:30", "2026-03-29 01:30", "2026-04-05 00:30"],
        id="berlin-weekly-0230-in-spring-gap",
    ),
    pytest.param(
        dict(
            first_run_date="2026-10-18",
            first_run_time="02:30:00",
            timezone="Europe/Berlin",
            interval_unit="weeks",
        ),
        ["2026-10-18 00:30", "2026-10-25 00:30", "2026-11-01 01:30"],
        id="berlin-weekly-0230-in-autumn-overlap",
    ),
    pytest.param(
        dict(
            first_run_date="2026-03-29",
            first_run_time="00:30:00",
            timezone="Europe/Berlin",
            interval_unit="hours",
        ),
        ["2026-03-28 23:30", "2026-03-29 00:30", "2026-03-29 01:30", "2026-03-29 02:30"],
        id="berlin-hourly-is-absolute-across-spring-gap",
    ),
    pytest.param(
        dict(
            first_run_date="2026-10-25",
            first_run_time="01:30:00",
            timezone="Europe/Berlin",
            interval_unit="hours",
        ),
        ["2026-10-24 23:30", "2026-10-25 00:30", "2026-10-25 01:30", "2026-10-25 02:30"],
        id="berlin-hourly-runs-both-occurrences-of-the-repeated-hour",
    ),
    pytest.param(
        dict(
            first_run_date="2026-03-29",
            first_run_time="02:30:00",
            timezone="Europe/Berlin",
            interval_unit="hours",
        ),
        ["2026-03-29 01:30", "2026-03-29 02:30"],
        id="berlin-hourly-first-run-in-spring-gap-moves-forward",
    ),
    pytest.param(
        dict(first_run_date="2026-03-07", first_run_time="02:30:00", timezone="US/Eastern"),
        ["2026-03-07 07:30", "2026-03-08 07:30", "2026-03-09 06:30"],
        id="eastern-daily-0230-in-spring-gap-runs-at-0330",
    ),
    pytest.param(
        dict(first_run_date="2026-10-31", first_run_time="01:30:00", timezone="US/Eastern"),
        ["2026-10-31 05:30", "2026-11-01 05:30", "2026-11-02 06:30"],
        id="eastern-daily-0130-in-autumn-overlap-runs-at-first-occurrence",
    ),
    pytest.param(
        dict(first_run_date="2026-03-07", timezone="US/Eastern"),
        ["2026-03-07 23:00", "2026-03-08 22:00", "2026-03-09 22:00"],
        id="eastern-daily-1800-stays-1800-into-summer-time",
    ),
    pytest.param(
        dict(
            first_run_date="2026-03-01",
            first_run_time="02:30:00",
            timezone="US/Eastern",
            interval_unit="weeks",
        ),
        ["2026-03-01 07:30", "2026-03-08 07:30", "2026-03-15 06:30"],
        id="eastern-weekly-0230-in-spring-gap",
    ),
    pytest.param(
        dict(
            first_run_date="2026-10-25",
            first_run_time="01:30:00",
            timezone="US/Eastern",
            interval_unit="weeks",
        ),
        ["2026-10-25 05:30", "2026-11-01 05:30", "2026-11-08 06:30"],
        id="eastern-weekly-0130-in-autumn-overlap",
    ),
    pytest.param(
        dict(
            first_run_date="2026-03-08",
            first_run_time="00:30:00",
            timezone="US/Eastern",
            interval_unit="hours",
        ),
        ["2026-03-08 05:30", "2026-03-08 06:30", "2026-03-08 07:30", "2026-03-08 08:30"],
        id="eastern-hourly-is-absolute-across-spring-gap",
    ),
    pytest.param(
        dict(
            first_run_date="2026-11-01",
            first_run_time="00:30:00",
            timezone="US/Eastern",
            interval_unit="hours",
        ),
        ["2026-11-01 04:30", "2026-11-01 05:30", "2026-11-01 06:30", "2026-11-01 07:30"],
        id="eastern-hourly-runs-both-occurrences-of-the-repeated-hour",
    ),
    pytest.param(
        dict(first_run_date="2024-02-28"),
        ["2024-02-28 18:00", "2024-02-29 18:00", "2024-03-01 18:00"],
        id="daily-through-a-leap-day",
    ),
    pytest.param(
        dict(first_run_date="2023-02-27"),
        ["2023-02-27 18:00", "2023-02-28 18:00", "2023-03-01 18:00"],
        id="daily-through-february-of-a-common-year",
    ),
    pytest.param(
        dict(first_run_date="2024-02-29", interval=52, interval_unit="weeks"),
        ["2024-02-29 18:00", "2025-02-27 18:00", "2026-02-26 18:00"],
        id="leap-day-first-run-every-52-weeks-drifts-by-calendar-days",
    ),
    pytest.param(
        dict(first_run_date="2024-02-29", interval=1461),
        ["2024-02-29 18:00", "2028-02-29 18:00", "2032-02-29 18:00"],
        id="leap-day-first-run-every-1461-days-lands-on-leap-days",
    ),
    pytest.param(
        dict(first_run_date="2026-01-31", interval=31),
        ["2026-01-31 18:00", "2026-03-03 18:00", "2026-04-03 18:00"],
        id="every-31-days-from-a-month-end",
    ),
    pytest.param(
        dict(first_run_date="2026-04-30"),
        ["2026-04-30 18:00", "2026-05-01 18:00"],
        id="daily-across-a-30-day-month-end",
    ),
    pytest.param(
        dict(first_run_date="2026-12-31", timezone="Europe/Berlin"),
        ["2026-12-31 17:00", "2027-01-01 17:00"],
        id="daily-across-a-year-end",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), TICK_SEQUENCES)
def test_ticks_follow_unit_and_local_calendar(fields: dict[str, Any], expected: list[str]) -> None:
    rec = schedule(**fields)

    assert [tick(rec, k) for k in range(len(expected))] == [utc(t) for t in expected]


@pytest.mark.parametrize(("fields", "expected"), TICK_SEQUENCES)
def test_next_tick_after_a_tick_is_the_following_tick(
    fields: dict[str, Any], expected: list[str]
) -> None:
    rec = schedule(**fields)
    ticks = [utc(t) for t in expected]

    assert next_tick_after(rec, ticks[0] - timedelta(seconds=1)) == ticks[0]
    assert [next_tick_after(rec, t) for t in ticks[:-1]] == ticks[1:]
    assert [next_tick_after(rec, t - timedelta(microseconds=1)) for t in ticks] == ticks


@pytest.mark.parametrize(("fields", "expected"), TICK_SEQUENCES)
def test_latest_tick_at_or_before_includes_the_instant_itself(
    fields: dict[str, Any], expected: list[str]
) -> None:
    rec = schedule(**fields)
    ticks = [utc(t) for t in expected]

    assert latest_tick_at_or_before(rec, ticks[0] - timedelta(microseconds=1)) is None
    assert [latest_tick_at_or_before(rec, t) for t in ticks] == ticks
    assert [latest_tick_at_or_before(rec, t + timedelta(seconds=59)) for t in ticks] == ticks


@pytest.mark.parametrize(
    ("fields", "instant", "latest", "following"),
    [
        pytest.param(
            dict(interval=1, interval_unit="minutes"),
            "2026-07-01 12:34:56",
            "2026-07-01 12:34",
            "2026-07-01 12:35",
            id="every-minute-since-2012-asked-in-2026",
        ),
        pytest.param(
            dict(interval=7, interval_unit="minutes"),
            "2026-07-01 00:00",
            "2026-07-01 00:00",
            "2026-07-01 00:07",
            id="every-7-minutes-since-2012-exactly-at-a-tick-in-2026",
        ),
        pytest.param(
            dict(interval=1, interval_unit="hours", timezone="Europe/Berlin"),
            "2099-12-31 23:59:59",
            "2099-12-31 23:00",
            "2100-01-01 00:00",
            id="hourly-since-2012-asked-in-2099",
        ),
        pytest.param(
            dict(timezone="Europe/Berlin"),
            "2090-07-01 00:00",
            "2090-06-30 16:00",
            "2090-07-01 16:00",
            id="berlin-daily-in-summer-2090",
        ),
        pytest.param(
            dict(timezone="Europe/Berlin"),
            "2090-01-15 00:00",
            "2090-01-14 17:00",
            "2090-01-15 17:00",
            id="berlin-daily-in-winter-2090",
        ),
        pytest.param(
            dict(interval=3, timezone="Europe/Berlin"),
            "2100-01-01 00:00",
            "2099-12-29 17:00",
            "2100-01-01 17:00",
            id="berlin-every-3-days-asked-in-2100",
        ),
        pytest.param(
            dict(interval_unit="weeks", timezone="US/Eastern"),
            "2100-01-01 00:00",
            "2099-12-31 23:00",
            "2100-01-07 23:00",
            id="eastern-weekly-whose-local-day-differs-from-the-utc-day",
        ),
        pytest.param(
            dict(first_run_date="2026-03-28", first_run_time="02:30:00", timezone="Europe/Berlin"),
            "2026-03-29 01:10",
            "2026-03-28 01:30",
            "2026-03-29 01:30",
            id="berlin-daily-0230-asked-after-the-skipped-wall-time-but-before-the-run",
        ),
        pytest.param(
            dict(first_run_date="2026-03-28", first_run_time="02:30:00", timezone="Europe/Berlin"),
            "2026-03-29 01:30",
            "2026-03-29 01:30",
            "2026-03-30 00:30",
            id="berlin-daily-0230-asked-exactly-at-the-moved-run",
        ),
        pytest.param(
            dict(first_run_date="2026-10-24", first_run_time="02:30:00", timezone="Europe/Berlin"),
            "2026-10-25 01:00",
            "2026-10-25 00:30",
            "2026-10-26 01:30",
            id="berlin-daily-0230-asked-during-the-repeated-hour",
        ),
    ],
)
def test_queries_far_from_first_run_and_near_dst(
    fields: dict[str, Any], instant: str, latest: str, following: str
) -> None:
    rec = schedule(**fields)

    assert latest_tick_at_or_before(rec, utc(instant)) == utc(latest)
    assert next_tick_after(rec, utc(instant)) == utc(following)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(
            dict(first_run_time="02:30:00", timezone="Europe/Berlin"), id="berlin-daily-0230"
        ),
        pytest.param(
            dict(first_run_time="01:30:00", timezone="US/Eastern", interval_unit="weeks"),
            id="eastern-weekly-0130",
        ),
        pytest.param(
            dict(first_run_time="23:45:00", timezone="Australia/Lord_Howe", interval=3),
            id="lord-howe-half-hour-dst-every-3-days",
        ),
        pytest.param(
            dict(timezone="US/Eastern", interval=5, interval_unit="hours"), id="eastern-5-hourly"
        ),
    ],
)
def test_lookups_agree_with_walking_the_ticks_one_by_one(fields: dict[str, Any]) -> None:
    rec = schedule(first_run_date="2025-01-01", **fields)
    ticks = [tick(rec, k) for k in range(400)]
    probe = ticks[0] - timedelta(hours=30)
    end = ticks[-2]

    while probe < end:
        walked_next = next(t for t in ticks if t > probe)
        walked_latest = max((t for t in ticks if t <= probe), default=None)
        assert next_tick_after(rec, probe) == walked_next, probe
        assert latest_tick_at_or_before(rec, probe) == walked_latest, probe
        probe += timedelta(hours=5, minutes=17, seconds=3)


def test_ticks_of_a_whole_range_are_strictly_increasing_across_dst() -> None:
    rec = schedule(first_run_date="2025-01-01", first_run_time="02:30:00", timezone="US/Eastern")

    ticks = [tick(rec, k) for k in range(2 * 366)]

    assert all(a < b for a, b in pairwise(ticks))


@pytest.mark.parametrize(
    ("fields", "after", "until", "expected"),
    [
        pytest.param(dict(), "2012-05-03 18:00", "2012-05-10 18:00", 7, id="week-of-daily"),
        pytest.param(dict(), "2012-05-03 17:59", "2012-05-10 17:59", 7, id="shifted-week"),
        pytest.param(dict(), "2012-05-10 18:00", "2012-05-10 18:00", 0, id="empty-span"),
        pytest.param(dict(), "2012-05-10 18:00", "2012-05-01 00:00", 0, id="reversed-span"),
        pytest.param(dict(), "2000-01-01 00:00", "2012-05-03 18:00", 1, id="before-first-run"),
        pytest.param(
            dict(interval_unit="minutes"),
            "2012-05-03 18:00",
            "2026-01-01 00:00",
            7_185_960,
            id="every-minute-2012-to-2026",
        ),
        pytest.param(
            dict(interval_unit="minutes"),
            "2012-05-03 18:00",
            "9999-12-31 23:59",
            4_201_103_879,
            id="every-minute-until-year-9999",
        ),
        pytest.param(
            dict(first_run_date="2026-03-28", first_run_time="02:30:00", timezone="Europe/Berlin"),
            "2026-03-01 00:00",
            "2026-04-01 00:00",
            4,
            id="berlin-daily-0230-across-spring-gap-counts-each-day-once",
        ),
        pytest.param(
            dict(first_run_date="2026-10-24", first_run_time="02:30:00", timezone="Europe/Berlin"),
            "2026-10-24 00:30",
            "2026-10-25 23:59",
            1,
            id="berlin-daily-0230-across-autumn-overlap-counts-the-day-once",
        ),
        pytest.param(
            dict(interval=-1, interval_unit=None),
            "2000-01-01 00:00",
            "2100-01-01 00:00",
            1,
            id="one-time",
        ),
    ],
)
def test_count_ticks_between_is_exclusive_then_inclusive(
    fields: dict[str, Any], after: str, until: str, expected: int
) -> None:
    assert count_ticks_between(schedule(**fields), utc(after), utc(until)) == expected


class TestOneTimeJob:
    rec = schedule(interval=-1, interval_unit=None)

    def test_is_one_time(self) -> None:
        assert self.rec.one_time
        assert not schedule().one_time

    def test_has_a_single_tick_at_its_first_run(self) -> None:
        assert tick(self.rec, 0) == utc("2012-05-03 18:00")
        with pytest.raises(ValueError, match="only tick 0"):
            tick(self.rec, 1)

    def test_next_tick_is_its_first_run_until_then_and_none_from_then_on(self) -> None:
        assert next_tick_after(self.rec, utc("2012-05-03 17:59:59")) == utc("2012-05-03 18:00")
        assert next_tick_after(self.rec, utc("2012-05-03 18:00")) is None
        assert next_tick_after(self.rec, utc("2099-01-01 00:00")) is None

    def test_latest_tick_is_its_first_run_once_that_has_passed(self) -> None:
        assert latest_tick_at_or_before(self.rec, utc("2012-05-03 17:59:59")) is None
        assert latest_tick_at_or_before(self.rec, utc("2099-01-01 00:00")) == utc(
            "2012-05-03 18:00"
        )


def test_negative_tick_index_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        tick(schedule(), -1)


def test_instants_in_other_offsets_mean_the_same_moment() -> None:
    rec = schedule()
    berlin_summer = datetime(2012, 5, 3, 20, 0, tzinfo=ZoneInfo("Europe/Berlin"))

    assert latest_tick_at_or_before(rec, berlin_summer) == utc("2012-05-03 18:00")
    following = next_tick_after(rec, berlin_summer)
    assert following == utc("2012-05-04 18:00")
    assert following is not None
    assert following.tzinfo is UTC


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda rec, naive: next_tick_after(rec, naive), id="next_tick_after"),
        pytest.param(
            lambda rec, naive: latest_tick_at_or_before(rec, naive), id="latest_tick_at_or_before"
        ),
        pytest.param(lambda rec, naive: count_ticks_between(rec, naive, naive), id="count"),
        pytest.param(lambda rec, naive: local_display(rec, naive), id="local_display"),
        pytest.param(lambda rec, naive: run_name("nightly", naive), id="run_name"),
        pytest.param(
            lambda rec, naive: decide(
                rec, now=naive, armed_at=None, last_schedule_time=None, starting_deadline=None
            ),
            id="decide",
        ),
    ],
)
def test_naive_datetimes_are_refused(call: Any) -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        call(schedule(), datetime(2012, 5, 3, 18, 0))


@pytest.mark.parametrize(
    ("fields", "instant", "expected"),
    [
        pytest.param(dict(), "2012-05-03 18:00", "2012-05-03 18:00:00 GMT", id="gmt"),
        pytest.param(
            dict(timezone="Europe/Berlin"),
            "2026-03-29 01:30",
            "2026-03-29 03:30:00 Europe/Berlin",
            id="berlin-run-moved-out-of-the-spring-gap",
        ),
        pytest.param(
            dict(timezone="US/Eastern"),
            "2026-11-01 06:30",
            "2026-11-01 01:30:00 US/Eastern",
            id="eastern-second-0130",
        ),
        pytest.param(
            dict(timezone="US/Eastern"),
            "2026-01-01 03:15:42",
            "2025-12-31 22:15:42 US/Eastern",
            id="eastern-previous-local-day",
        ),
    ],
)
def test_local_display_is_wall_time_in_the_schedule_zone(
    fields: dict[str, Any], instant: str, expected: str
) -> None:
    assert local_display(schedule(**fields), utc(instant)) == expected


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        pytest.param(utc("2012-05-03 18:00"), "nightly-20120503-1800", id="utc-tick"),
        pytest.param(utc("2012-05-03 18:00:59"), "nightly-20120503-1800", id="seconds-dropped"),
        pytest.param(
            datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Berlin")),
            "nightly-20260329-0130",
            id="named-by-utc-not-local-time",
        ),
    ],
)
def test_run_name_is_schedule_and_utc_minute(instant: datetime, expected: str) -> None:
    assert run_name("nightly", instant) == expected


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param(dict(first_run_date="2012-5-3"), "firstRunDate", id="date-unpadded"),
        pytest.param(dict(first_run_date="20120503"), "firstRunDate", id="date-basic-format"),
        pytest.param(dict(first_run_date="2012-W18-4"), "firstRunDate", id="date-iso-week"),
        pytest.param(
            dict(first_run_date="2012-05-03T18:00:00"), "firstRunDate", id="date-with-time"
        ),
        pytest.param(dict(first_run_date=" 2012-05-03"), "firstRunDate", id="date-with-space"),
        pytest.param(dict(first_run_date=""), "firstRunDate", id="date-empty"),
        pytest.param(
            dict(first_run_date="\u0662\u0660\u0661\u0662-\u0660\u0665-\u0660\u0663"),
            "firstRunDate",
            id="date-arabic-digits",
        ),
        pytest.param(dict(first_run_date="2012-02-30"), "firstRunDate", id="date-feb-30"),
        pytest.param(dict(first_run_date="2023-02-29"), "firstRunDate", id="date-feb-29-common"),
        pytest.param(dict(first_run_date="2012-13-01"), "firstRunDate", id="date-month-13"),
        pytest.param(
            dict(first_run_date="0001-01-01", first_run_time="00:30:00", timezone="Asia/Tokyo"),
            "firstRunDate",
            id="date-before-year-1-in-utc",
        ),
        pytest.param(
            dict(first_run_date="9999-12-31", first_run_time="23:00:00", timezone="US/Eastern"),
            "firstRunDate",
            id="date-after-year-9999-in-utc",
        ),
        pytest.param(dict(first_run_time="18:00"), "firstRunTime", id="time-without-seconds"),
        pytest.param(dict(first_run_time="6pm"), "firstRunTime", id="time-words"),
        pytest.param(dict(first_run_time="6:00:00"), "firstRunTime", id="time-unpadded"),
        pytest.param(dict(first_run_time="18:00:00.5"), "firstRunTime", id="time-fraction"),
        pytest.param(dict(first_run_time="18:00:00Z"), "firstRunTime", id="time-with-zone"),
        pytest.param(dict(first_run_time="18:00:00+02:00"), "firstRunTime", id="time-offset"),
        pytest.param(dict(first_run_time="24:00:00"), "firstRunTime", id="time-hour-24"),
        pytest.param(dict(first_run_time="18:60:00"), "firstRunTime", id="time-minute-60"),
        pytest.param(dict(first_run_time="18:00:60"), "firstRunTime", id="time-leap-second"),
        pytest.param(dict(first_run_time=""), "firstRunTime", id="time-empty"),
        pytest.param(dict(timezone="Mars/Olympus"), "timezone", id="zone-unknown"),
        pytest.param(dict(timezone="gmt"), "timezone", id="zone-wrong-case"),
        pytest.param(dict(timezone="Europe/Berlin "), "timezone", id="zone-trailing-space"),
        pytest.param(dict(timezone="America"), "timezone", id="zone-folder"),
        pytest.param(dict(timezone="localtime"), "timezone", id="zone-machine-local"),
        pytest.param(dict(timezone="/etc/passwd"), "timezone", id="zone-absolute-path"),
        pytest.param(dict(timezone="../zoneinfo/UTC"), "timezone", id="zone-relative-path"),
        pytest.param(dict(timezone=""), "timezone", id="zone-empty"),
        pytest.param(dict(timezone="+02:00"), "timezone", id="zone-offset"),
        pytest.param(dict(interval=0), "interval", id="interval-zero"),
        pytest.param(dict(interval=-2), "interval", id="interval-minus-two"),
        pytest.param(dict(interval=-1), "intervalUnit", id="one-time-with-a-unit"),
        pytest.param(dict(interval=0, interval_unit=None), "interval", id="zero-without-unit"),
        pytest.param(dict(interval_unit=None), "intervalUnit", id="recurring-without-unit"),
        pytest.param(dict(interval_unit="months"), "intervalUnit", id="unit-months"),
        pytest.param(dict(interval_unit="Days"), "intervalUnit", id="unit-capitalised"),
        pytest.param(dict(interval_unit="day"), "intervalUnit", id="unit-singular"),
        pytest.param(dict(interval_unit=""), "intervalUnit", id="unit-empty"),
        pytest.param(dict(interval_unit="null"), "intervalUnit", id="unit-null-string"),
        pytest.param(
            dict(interval=10**9, interval_unit="weeks"), "interval", id="interval-beyond-year-9999"
        ),
        pytest.param(
            dict(interval=10**13, interval_unit="minutes"), "interval", id="minutes-beyond-9999"
        ),
    ],
)
def test_bad_fields_are_named_in_the_error(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        schedule(**fields)

    assert caught.value.field == field
    assert str(caught.value) == f"{field}: {caught.value.message}"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            dict(first_run_date="2012-5-3"),
            "firstRunDate: must be a date as YYYY-MM-DD, got '2012-5-3'",
            id="date-format",
        ),
        pytest.param(
            dict(first_run_date="2012-02-30"),
            "firstRunDate: 2012-02-30 is not a calendar date",
            id="date-calendar",
        ),
        pytest.param(
            dict(first_run_time="18:00"),
            "firstRunTime: must be a time as hh:mm:ss, got '18:00'",
            id="time-format",
        ),
        pytest.param(
            dict(timezone="Mars/Olympus"),
            "timezone: unknown time zone 'Mars/Olympus'; use an IANA name such as GMT, "
            "US/Eastern or Europe/Berlin",
            id="zone",
        ),
        pytest.param(
            dict(interval=0),
            "interval: must be at least 1, or -1 for a one-time job, got 0",
            id="interval",
        ),
        pytest.param(
            dict(interval=-1),
            "intervalUnit: must be null for a one-time job (interval -1), got 'days'",
            id="one-time-unit",
        ),
        pytest.param(
            dict(interval=2, interval_unit=None),
            "intervalUnit: is required with interval 2; null only with interval -1",
            id="missing-unit",
        ),
        pytest.param(
            dict(interval_unit="months"),
            "intervalUnit: must be one of minutes, hours, days, weeks, or null for a one-time "
            "job, got 'months'",
            id="unknown-unit",
        ),
    ],
)
def test_error_messages_say_what_is_expected(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        schedule(**fields)

    assert str(caught.value) == expected


@pytest.mark.parametrize(
    "zone", ["GMT", "UTC", "US/Eastern", "US/Central", "US/Pacific", "Europe/Berlin", "Etc/GMT+5"]
)
def test_iana_zone_names_are_accepted(zone: str) -> None:
    assert schedule(timezone=zone).timezone.key == zone


def test_parse_gives_the_fields_as_values() -> None:
    rec = schedule(interval=2, interval_unit="weeks", timezone="US/Eastern")

    assert rec == Recurrence(
        first_run_date=date(2012, 5, 3),
        first_run_time=time(18, 0),
        timezone=ZoneInfo("US/Eastern"),
        interval=2,
        unit="weeks",
    )


def test_building_a_recurrence_directly_checks_interval_and_unit() -> None:
    with pytest.raises(InvalidSchedule) as caught:
        Recurrence(
            first_run_date=date(2012, 5, 3),
            first_run_time=time(18, 0),
            timezone=ZoneInfo("GMT"),
            interval=-1,
            unit="days",
        )

    assert caught.value.field == "intervalUnit"


HOUR = timedelta(hours=1)
DAILY: dict[str, Any] = {}
ONE_TIME: dict[str, Any] = dict(interval=-1, interval_unit=None)


def decision(
    fire: str | None = None,
    missed: int = 0,
    late: str | None = None,
    next_tick: str | None = None,
) -> TickDecision:
    return TickDecision(
        fire=utc(fire) if fire else None,
        missed=missed,
        late=utc(late) if late else None,
        next_tick=utc(next_tick) if next_tick else None,
    )


# Daily at 18:00 GMT from 2012-05-03, unless the case says otherwise.
@pytest.mark.parametrize(
    ("fields", "now", "armed_at", "last", "deadline", "expected"),
    [
        pytest.param(
            DAILY,
            "2012-05-10 09:00",
            "2012-05-10 08:59:30",
            None,
            None,
            decision(next_tick="2012-05-10 18:00"),
            id="creating-a-schedule-with-past-ticks-fires-none-of-them",
        ),
        pytest.param(
            DAILY,
            "2012-05-10 18:00:05",
            "2012-05-10 18:00:01",
            None,
            HOUR,
            decision(next_tick="2012-05-11 18:00"),
            id="creating-just-after-a-tick-does-not-fire-it-even-within-the-deadline",
        ),
        pytest.param(
            DAILY,
            "2012-05-10 18:00",
            "2012-05-10 09:00",
            None,
            HOUR,
            decision(fire="2012-05-10 18:00", next_tick="2012-05-11 18:00"),
            id="first-tick-after-creation-fires-exactly-at-its-time",
        ),
        pytest.param(
            DAILY,
            "2012-05-10 17:59:59.999999",
            "2012-05-10 09:00",
            None,
            HOUR,
            decision(next_tick="2012-05-10 18:00"),
            id="a-microsecond-before-the-tick-nothing-fires",
        ),
        pytest.param(
            DAILY,
            "2012-05-10 18:00",
            "2012-05-10 18:00",
            None,
            HOUR,
            decision(next_tick="2012-05-11 18:00"),
            id="tick-at-the-arming-instant-is-history",
        ),
        pytest.param(
            DAILY,
            "2012-05-10 18:00:30",
            "2012-05-01 00:00",
            "2012-05-10 18:00",
            HOUR,
            decision(next_tick="2012-05-11 18:00"),
            id="tick-already-acted-on-does-not-fire-again",
        ),
        pytest.param(
            DAILY,
            "2012-05-20 12:00:01",
            "2012-05-20 12:00",
            "2012-05-05 18:00",
            None,
            decision(next_tick="2012-05-20 18:00"),
            id="unsuspending-does-not-fire-ticks-missed-while-suspended",
        ),
        pytest.param(
            DAILY,
            "2012-05-20 18:00:10",
            "2012-05-20 12:00",
            "2012-05-05 18:00",
            HOUR,
            decision(fire="2012-05-20 18:00", next_tick="2012-05-21 18:00"),
            id="after-unsuspending-the-next-tick-fires-with-nothing-missed",
        ),
        pytest.param(
            DAILY,
            "2012-05-15 18:20",
            "2012-05-01 00:00",
            "2012-05-05 18:00",
            HOUR,
            decision(fire="2012-05-15 18:00", missed=9, next_tick="2012-05-16 18:00"),
            id="operator-down-ten-ticks-fires-the-newest-and-misses-nine",
        ),
        pytest.param(
            DAILY,
            "2012-05-15 19:00",
            "2012-05-01 00:00",
            "2012-05-05 18:00",
            HOUR,
            decision(fire="2012-05-15 18:00", missed=9, next_tick="2012-05-16 18:00"),
            id="exactly-at-the-starting-deadline-still-fires",
        ),
        pytest.param(
            DAILY,
            "2012-05-15 19:00:01",
            "2012-05-01 00:00",
            "2012-05-05 18:00",
            HOUR,
            decision(missed=10, late="2012-05-15 18:00", next_tick="2012-05-16 18:00"),
            id="past-the-starting-deadline-skips-and-reports-the-late-tick",
        ),
        pytest.param(
            DAILY,
            "2012-05-15 23:59",
            "2012-05-01 00:00",
            "2012-05-05 18:00",
            None,
            decision(fire="2012-05-15 18:00", missed=9, next_tick="2012-05-16 18:00"),
            id="without-a-starting-deadline-the-newest-tick-fires-however-late",
        ),
        pytest.param(
            dict(interval_unit="minutes"),
            "2026-01-01 00:00:30",
            "2012-05-01 00:00",
            "2012-05-03 18:00",
            timedelta(seconds=60),
            decision(fire="2026-01-01 00:00", missed=7_185_959, next_tick="2026-01-01 00:01"),
            id="every-minute-with-the-operator-down-for-years",
        ),
        pytest.param(
            DAILY,
            "2012-05-01 00:00",
            "2012-04-30 00:00",
            None,
            HOUR,
            decision(next_tick="2012-05-03 18:00"),
            id="before-the-first-run-nothing-fires",
        ),
        pytest.param(
            DAILY,
            "2012-05-03 18:10",
            None,
            None,
            HOUR,
            decision(fire="2012-05-03 18:00", next_tick="2012-05-04 18:00"),
            id="no-lower-bound-counts-from-the-first-run",
        ),
        pytest.param(
            DAILY,
            "2012-05-10 09:00",
            "2012-05-20 00:00",
            None,
            HOUR,
            decision(next_tick="2012-05-10 18:00"),
            id="armed-in-the-future-fires-nothing",
        ),
        pytest.param(
            dict(first_run_date="2026-03-28", first_run_time="02:30:00", timezone="Europe/Berlin"),
            "2026-03-29 01:30",
            "2026-03-28 12:00",
            "2026-03-28 01:30",
            HOUR,
            decision(fire="2026-03-29 01:30", next_tick="2026-03-30 00:30"),
            id="berlin-0230-fires-at-0330-on-the-spring-change",
        ),
        pytest.param(
            dict(first_run_date="2026-10-24", first_run_time="02:30:00", timezone="Europe/Berlin"),
            "2026-10-25 01:30",
            "2026-10-01 00:00",
            "2026-10-25 00:30",
            HOUR,
            decision(next_tick="2026-10-26 01:30"),
            id="berlin-0230-does-not-fire-again-when-the-wall-clock-repeats-0230",
        ),
        pytest.param(
            ONE_TIME,
            "2012-05-03 18:10:01",
            "2012-05-03 18:10",
            None,
            HOUR,
            decision(fire="2012-05-03 18:00"),
            id="one-time-created-shortly-after-its-time-runs-once-now",
        ),
        pytest.param(
            ONE_TIME,
            "2012-05-03 19:00",
            "2012-05-03 19:00",
            None,
            HOUR,
            decision(fire="2012-05-03 18:00"),
            id="one-time-created-exactly-at-its-deadline-runs",
        ),
        pytest.param(
            ONE_TIME,
            "2012-05-03 20:00:01",
            "2012-05-03 20:00",
            None,
            HOUR,
            decision(),
            id="one-time-created-past-its-deadline-never-runs",
        ),
        pytest.param(
            ONE_TIME,
            "2012-05-03 18:20",
            "2012-05-03 18:10",
            "2012-05-03 18:00",
            HOUR,
            decision(),
            id="one-time-already-acted-on-does-not-run-again",
        ),
        pytest.param(
            ONE_TIME,
            "2012-05-02 00:00",
            "2012-05-01 00:00",
            None,
            HOUR,
            decision(next_tick="2012-05-03 18:00"),
            id="one-time-before-its-time-waits-for-it",
        ),
        pytest.param(
            ONE_TIME,
            "2012-05-03 18:00",
            "2012-05-01 00:00",
            None,
            HOUR,
            decision(fire="2012-05-03 18:00"),
            id="one-time-fires-exactly-at-its-time",
        ),
        pytest.param(
            ONE_TIME,
            "2012-05-03 20:00",
            "2012-05-01 00:00",
            None,
            HOUR,
            decision(missed=1, late="2012-05-03 18:00"),
            id="one-time-missed-while-the-operator-was-down-is-late",
        ),
        pytest.param(
            ONE_TIME,
            "2012-05-10 00:00:01",
            "2012-05-10 00:00",
            None,
            None,
            decision(fire="2012-05-03 18:00"),
            id="one-time-without-a-deadline-created-days-late-runs",
        ),
    ],
)
def test_decide(
    fields: dict[str, Any],
    now: str,
    armed_at: str | None,
    last: str | None,
    deadline: timedelta | None,
    expected: TickDecision,
) -> None:
    result = decide(
        schedule(**fields),
        now=utc(now),
        armed_at=utc(armed_at) if armed_at else None,
        last_schedule_time=utc(last) if last else None,
        starting_deadline=deadline,
    )

    assert result == expected


@pytest.mark.parametrize(
    ("fields", "after", "count", "expected"),
    [
        pytest.param(
            dict(
                first_run_date="2026-03-28",
                first_run_time="02:30:00",
                timezone="Europe/Berlin",
            ),
            "2026-01-01 00:00",
            3,
            ["2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"],
            id="berlin-spring-change",
        ),
        pytest.param(
            dict(interval=90, interval_unit="minutes"),
            "2012-05-03 18:00",
            2,
            ["2012-05-03T19:30:00Z", "2012-05-03T21:00:00Z"],
            id="after-is-exclusive",
        ),
        pytest.param(
            dict(interval_unit="minutes"),
            "2026-07-01 12:34:56",
            2,
            ["2026-07-01T12:35:00Z", "2026-07-01T12:36:00Z"],
            id="far-from-the-first-run",
        ),
        pytest.param(ONE_TIME, "2000-01-01 00:00", 5, ["2012-05-03T18:00:00Z"], id="one-time"),
        pytest.param(ONE_TIME, "2012-05-03 18:00", 5, [], id="one-time-already-past"),
        pytest.param(DAILY, "2000-01-01 00:00", 0, [], id="zero-lines"),
        pytest.param(
            dict(first_run_date="9999-12-29", first_run_time="12:00:00"),
            "9999-12-01 00:00",
            5,
            ["9999-12-29T12:00:00Z", "9999-12-30T12:00:00Z", "9999-12-31T12:00:00Z"],
            id="stops-at-the-end-of-year-9999",
        ),
    ],
)
def test_preview_lines_list_upcoming_ticks_in_rfc3339(
    fields: dict[str, Any], after: str, count: int, expected: list[str]
) -> None:
    spec: dict[str, Any] = dict(
        first_run_date="2012-05-03",
        first_run_time="18:00:00",
        timezone="GMT",
        interval=1,
        interval_unit="days",
    )
    spec.update(fields)

    assert preview_lines(**spec, count=count, after=utc(after)) == expected


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        pytest.param(dict(timezone="Nowhere/Special"), "timezone", id="zone"),
        pytest.param(dict(first_run_date="03/05/2012"), "firstRunDate", id="date"),
        pytest.param(dict(interval=-1), "intervalUnit", id="one-time-with-unit"),
        pytest.param(dict(count=-1), "count", id="negative-count"),
        pytest.param(dict(after=datetime(2026, 1, 1)), "after", id="naive-after"),
    ],
)
def test_preview_lines_refuse_bad_input_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    arguments: dict[str, Any] = dict(
        first_run_date="2012-05-03",
        first_run_time="18:00:00",
        timezone="GMT",
        interval=1,
        interval_unit="days",
        count=3,
        after=utc("2026-01-01 00:00"),
    )
    arguments.update(overrides)

    with pytest.raises(InvalidSchedule) as caught:
        preview_lines(**arguments)

    assert caught.value.field == field
