"""When a backup schedule fires: pure time arithmetic, with ``now`` always passed in.

A schedule is an OpsCenter job schedule: a first run given as a local date and
wall time in a named zone, then a step of N minutes, hours, days or weeks (or
none at all, for a one-time job). Minutes and hours are absolute durations, so
an hourly job runs every sixty minutes even across a DST change. Days and weeks
are calendar steps in the schedule's zone, so a nightly 18:00 backup stays at
18:00 local time all year. A wall time that a DST change skips runs as many
minutes later as were skipped; one that happens twice runs at its first
occurrence. That is exactly what ``fold=0`` means to :mod:`zoneinfo`, and it is
why local times are resolved in a single place, :func:`_resolve_local`.

Nothing here reads a clock or walks ticks one at a time: the tick at or around
an instant comes from a division (or a difference of dates) followed by a
correction of a step or two. A one-minute schedule begun in 2012 answers
questions about 2026 as fast as it answers questions about its first day.

All instants taken and returned are aware datetimes; results are in UTC. A
naive datetime is refused rather than guessed at, because guessing would mean
reading the machine's local zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from importlib import resources
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cassandra_backup.timefmt import rfc3339

IntervalUnit = Literal["minutes", "hours", "days", "weeks"]

INTERVAL_UNITS: tuple[IntervalUnit, ...] = get_args(IntervalUnit)
ONE_TIME_INTERVAL = -1

_DATE_FORMAT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIME_FORMAT = re.compile(r"[0-9]{2}:[0-9]{2}:[0-9]{2}")
_DAYS_PER_UNIT: dict[IntervalUnit, int] = {"days": 1, "weeks": 7}
_ABSOLUTE_UNITS: dict[IntervalUnit, timedelta] = {
    "minutes": timedelta(minutes=1),
    "hours": timedelta(hours=1),
}


class InvalidSchedule(ValueError):
    """A schedule field that cannot be turned into ticks.

    ``field`` is the camelCase name the user wrote in the BackupSchedule spec,
    so the message can go straight into a condition or onto a terminal.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Recurrence:
    """The time fields of a BackupSchedule spec, checked and parsed.

    ``interval`` is at least 1 with a ``unit``, or -1 with no unit for a job that
    runs once, at its first run time.
    """

    first_run_date: date
    first_run_time: time
    timezone: ZoneInfo
    interval: int
    unit: IntervalUnit | None

    def __post_init__(self) -> None:
        _check_interval(self.interval, self.unit)
        _check_representable(self)

    @classmethod
    def parse(
        cls,
        *,
        first_run_date: str,
        first_run_time: str,
        timezone: str,
        interval: int,
        interval_unit: str | None,
    ) -> Recurrence:
        """Build a recurrence from spec strings; raise :class:`InvalidSchedule` naming the field."""
        return cls(
            first_run_date=_parse_date(first_run_date),
            first_run_time=_parse_time(first_run_time),
            timezone=_parse_zone(timezone),
            interval=interval,
            unit=_parse_unit(interval_unit),
        )

    @property
    def one_time(self) -> bool:
        return self.unit is None


@dataclass(frozen=True)
class TickDecision:
    """What a schedule should do at one moment, from :func:`decide`."""

    fire: datetime | None
    """The tick to create a run for now, if any."""
    missed: int
    """Due ticks that will never run, not counting ``fire``."""
    late: datetime | None
    """The newest due tick, when it was skipped for being past the starting deadline."""
    next_tick: datetime | None
    """The first tick strictly after now: when to look again. None once no tick is left."""


def tick(rec: Recurrence, index: int) -> datetime:
    """The ``index``-th tick in UTC; tick 0 is the first run."""
    if index < 0:
        raise ValueError(f"tick index must not be negative, got {index}")
    if rec.one_time and index > 0:
        raise ValueError(f"a one-time job has only tick 0, got {index}")

    if rec.unit is None or index == 0:
        return _first_tick(rec)
    if rec.unit in _ABSOLUTE_UNITS:
        return _first_tick(rec) + index * rec.interval * _ABSOLUTE_UNITS[rec.unit]
    days = index * rec.interval * _DAYS_PER_UNIT[rec.unit]
    return _resolve_local(rec, rec.first_run_date + timedelta(days=days))


def next_tick_after(rec: Recurrence, instant: datetime) -> datetime | None:
    """The first tick strictly after ``instant``; None if the schedule has no more."""
    return _tick_or_none(rec, _ticks_at_or_before(rec, _as_utc(instant)))


def latest_tick_at_or_before(rec: Recurrence, instant: datetime) -> datetime | None:
    """The newest tick not after ``instant``; None if the first run is still ahead."""
    count = _ticks_at_or_before(rec, _as_utc(instant))
    return tick(rec, count - 1) if count > 0 else None


def count_ticks_between(
    rec: Recurrence, after_exclusive: datetime, until_inclusive: datetime
) -> int:
    """How many ticks fall in the half-open span (``after_exclusive``, ``until_inclusive``]."""
    until = _ticks_at_or_before(rec, _as_utc(until_inclusive))
    after = _ticks_at_or_before(rec, _as_utc(after_exclusive))
    return max(0, until - after)


def decide(
    rec: Recurrence,
    *,
    now: datetime,
    armed_at: datetime | None,
    last_schedule_time: datetime | None,
    starting_deadline: timedelta | None,
) -> TickDecision:
    """Whether a schedule fires now, and how many ticks it has lost.

    ``armed_at`` is when the schedule was created, edited or unsuspended: ticks
    before it are history and never fire. ``last_schedule_time`` is the last
    tick acted on. Of the ticks after both and not after ``now``, only the
    newest may run, and only within ``starting_deadline`` (None: no deadline);
    the others count as missed. A one-time job never acted on still runs once
    when it was armed a little after its time, as long as that is within the
    deadline: otherwise a job applied a second late would silently never run.
    """
    now = _as_utc(now)
    bounds = [_as_utc(b) for b in (armed_at, last_schedule_time) if b is not None]
    lower = max(bounds, default=None)
    next_tick = next_tick_after(rec, now)

    if rec.one_time and last_schedule_time is None:
        first = _first_tick(rec)
        if first <= now and _within(now - first, starting_deadline):
            return TickDecision(fire=first, missed=0, late=None, next_tick=next_tick)

    up_to_now = _ticks_at_or_before(rec, now)
    already_past = _ticks_at_or_before(rec, lower) if lower is not None else 0
    due = max(0, up_to_now - already_past)
    if due == 0:
        return TickDecision(fire=None, missed=0, late=None, next_tick=next_tick)

    newest = tick(rec, up_to_now - 1)
    if _within(now - newest, starting_deadline):
        return TickDecision(fire=newest, missed=due - 1, late=None, next_tick=next_tick)
    return TickDecision(fire=None, missed=due, late=newest, next_tick=next_tick)


def local_display(rec: Recurrence, instant: datetime) -> str:
    """``instant`` as OpsCenter shows ``next_run``: wall time in the schedule's zone, then the zone.

    The zone is the name the user wrote (``2012-05-03 18:00:00 GMT``,
    ``2026-03-29 03:30:00 Europe/Berlin``), not a DST abbreviation.
    """
    local = _as_utc(instant).astimezone(rec.timezone)
    return f"{local:%Y-%m-%d %H:%M:%S} {rec.timezone.key}"


def run_name(schedule_name: str, tick: datetime) -> str:
    """The name of the run for one tick: ``<schedule>-<YYYYMMDD-HHMM>`` of the tick in UTC."""
    return f"{schedule_name}-{_as_utc(tick):%Y%m%d-%H%M}"


def preview_lines(
    *,
    first_run_date: str,
    first_run_time: str,
    timezone: str,
    interval: int,
    interval_unit: str | None,
    count: int,
    after: datetime,
) -> list[str]:
    """The next ``count`` ticks strictly after ``after``, in RFC 3339 UTC, for ``next-runs``.

    Fewer lines come back when the schedule runs out (a one-time job has one).
    """
    rec = Recurrence.parse(
        first_run_date=first_run_date,
        first_run_time=first_run_time,
        timezone=timezone,
        interval=interval,
        interval_unit=interval_unit,
    )
    if count < 0:
        raise InvalidSchedule("count", f"must not be negative, got {count}")
    if after.utcoffset() is None:
        raise InvalidSchedule("after", "must carry a UTC offset, e.g. 2026-03-01T00:00:00Z")

    start = _ticks_at_or_before(rec, after.astimezone(UTC))
    lines: list[str] = []
    for index in range(start, start + count):
        instant = _tick_or_none(rec, index)
        if instant is None:
            break
        lines.append(rfc3339(instant))
    return lines


def _ticks_at_or_before(rec: Recurrence, instant: datetime) -> int:
    """How many ticks are not after ``instant`` (a UTC datetime): the index of the next one."""
    first = _first_tick(rec)
    if instant < first:
        return 0
    if rec.unit is None:
        return 1
    if rec.unit in _ABSOLUTE_UNITS:
        return (instant - first) // (rec.interval * _ABSOLUTE_UNITS[rec.unit]) + 1

    # Local wall times map to UTC monotonically only up to the size of a DST
    # change, so the estimate from the local date can be one step off either way.
    # Not handled: a zone that skips a whole calendar day (Pacific/Apia at the end
    # of 2011) resolves that day's tick onto the next day's instant, and both count.
    step_days = rec.interval * _DAYS_PER_UNIT[rec.unit]
    local_day = instant.astimezone(rec.timezone).date()
    count = max(1, (local_day - rec.first_run_date).days // step_days + 1)
    while count > 1 and tick(rec, count - 1) > instant:
        count -= 1
    while (following := _tick_or_none(rec, count)) is not None and following <= instant:
        count += 1
    return count


def _tick_or_none(rec: Recurrence, index: int) -> datetime | None:
    """The tick at ``index``, or None past a one-time job's only tick or beyond year 9999."""
    if rec.one_time and index > 0:
        return None
    try:
        return tick(rec, index)
    except OverflowError:
        return None


def _first_tick(rec: Recurrence) -> datetime:
    return _resolve_local(rec, rec.first_run_date)


def _resolve_local(rec: Recurrence, day: date) -> datetime:
    """The first-run wall time on ``day`` in the schedule's zone, as a UTC instant.

    ``fold=0`` takes the offset in force before a DST change: a skipped wall
    time lands as far after the change as it was meant to be after its start,
    and a repeated one resolves to its first occurrence.
    """
    local = datetime.combine(day, rec.first_run_time).replace(tzinfo=rec.timezone, fold=0)
    return local.astimezone(UTC)


def _within(age: timedelta, deadline: timedelta | None) -> bool:
    return deadline is None or age <= deadline


def _as_utc(instant: datetime) -> datetime:
    if instant.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {instant.isoformat()}")
    return instant.astimezone(UTC)


def _parse_date(text: str) -> date:
    if not _DATE_FORMAT.fullmatch(text):
        raise InvalidSchedule("firstRunDate", f"must be a date as YYYY-MM-DD, got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidSchedule("firstRunDate", f"{text} is not a calendar date") from None


def _parse_time(text: str) -> time:
    if not _TIME_FORMAT.fullmatch(text):
        raise InvalidSchedule("firstRunTime", f"must be a time as hh:mm:ss, got {text!r}")
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise InvalidSchedule("firstRunTime", f"{text} is not a time of day") from None


def _parse_zone(name: str) -> ZoneInfo:
    # Only names the tzdata package ships are accepted, so a schedule means the
    # same everywhere: "localtime" or a file under the host's zoneinfo folder
    # would make a spec depend on the machine the operator happens to run on.
    problem = (
        f"unknown time zone {name!r}; use an IANA name such as GMT, US/Eastern or Europe/Berlin"
    )
    if name not in _known_zone_names():
        raise InvalidSchedule("timezone", problem)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule("timezone", problem) from None


@lru_cache(maxsize=1)
def _known_zone_names() -> frozenset[str]:
    listing = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(listing.split())


def _parse_unit(text: str | None) -> IntervalUnit | None:
    if text is None:
        return None
    for unit in INTERVAL_UNITS:
        if text == unit:
            return unit
    raise InvalidSchedule(
        "intervalUnit",
        f"must be one of {', '.join(INTERVAL_UNITS)}, or null for a one-time job, got {text!r}",
    )


def _check_interval(interval: int, unit: IntervalUnit | None) -> None:
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise InvalidSchedule("interval", f"must be a whole number, got {interval!r}")
    if interval != ONE_TIME_INTERVAL and interval < 1:
        raise InvalidSchedule(
            "interval", f"must be at least 1, or -1 for a one-time job, got {interval}"
        )
    if unit is not None and unit not in INTERVAL_UNITS:
        raise InvalidSchedule(
            "intervalUnit", f"must be one of {', '.join(INTERVAL_UNITS)}, got {unit!r}"
        )
    if interval == ONE_TIME_INTERVAL and unit is not None:
        raise InvalidSchedule(
            "intervalUnit", f"must be null for a one-time job (interval -1), got {unit!r}"
        )
    if interval != ONE_TIME_INTERVAL and unit is None:
        raise InvalidSchedule(
            "intervalUnit", f"is required with interval {interval}; null only with interval -1"
        )


def _check_representable(rec: Recurrence) -> None:
    try:
        _first_tick(rec)
    except OverflowError:
        raise InvalidSchedule(
            "firstRunDate", f"{rec.first_run_date} is outside the years this operator handles"
        ) from None
    if rec.one_time:
        return
    try:
        tick(rec, 1)
    except OverflowError:
        raise InvalidSchedule(
            "interval",
            f"{rec.interval} {rec.unit} is so long that the second run would fall after year 9999",
        ) from None
