"""Tick arithmetic with an injected clock: intervals, cron, time zones, DST days, and the
catch-up policies. No database: `now` is an argument here, and the one fake clock."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from saga.schedules.timing import Cron, Every, first_tick, parse, plan, tick_id

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=tz, fold=fold)  # type: ignore[misc]


def walk(timing: Cron | Every, start: datetime, n: int) -> list[datetime]:
    ticks, t = [], start
    for _ in range(n):
        t = timing.next_after(t)
        ticks.append(t)
    return ticks


# -- intervals ---------------------------------------------------------------------------


def test_an_interval_ticks_on_multiples_from_midnight_in_its_zone() -> None:
    every = Every(300, ZoneInfo("UTC"))
    assert every.next_after(utc(2026, 5, 1, 10, 2, 30)) == utc(2026, 5, 1, 10, 5)
    assert every.next_after(utc(2026, 5, 1, 10, 5)) == utc(2026, 5, 1, 10, 10)  # strictly after
    daily = Every(86400, BERLIN)  # elapsed time: local midnight in winter, 01:00 in summer
    assert daily.next_after(utc(2026, 1, 10, 12)) == local(BERLIN, 2026, 1, 11)
    assert daily.next_after(utc(2026, 7, 10, 12)) == local(BERLIN, 2026, 7, 11, 1)


def test_an_hourly_interval_ignores_dst_and_ticks_every_real_hour() -> None:
    hourly = Every(3600, BERLIN)
    ticks = walk(hourly, local(BERLIN, 2026, 10, 25, 1, 30), 4)  # fall back at 03:00 CEST
    assert [t - s for s, t in pairwise(ticks)] == [timedelta(hours=1)] * 3
    assert len(set(ticks)) == 4


def test_interval_ticks_between_two_times() -> None:
    every = Every(10, ZoneInfo("UTC"))
    due, count = every.ticks(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 1, 5), keep=3)
    assert count == 7  # :00, :10, ..., 1:00
    assert due == [utc(2026, 1, 1, 0, 0, 40), utc(2026, 1, 1, 0, 0, 50), utc(2026, 1, 1, 0, 1)]


# -- cron, zones and DST -----------------------------------------------------------------


@pytest.mark.parametrize(("tz", "spring", "fall", "repeated"), [
    # EU: the last Sundays of March and October, 02:00-03:00 skipped, 02:00-03:00 twice.
    (BERLIN, (2026, 3, 29), (2026, 10, 25), "30 2 * * *"),
    # US: the second Sunday of March (02:00-03:00 skipped), the first of November
    # (01:00-02:00 twice).
    (NEW_YORK, (2026, 3, 8), (2026, 11, 1), "30 1 * * *"),
])
def test_a_nightly_job_runs_once_on_both_dst_days(
        tz: ZoneInfo, spring: tuple[int, int, int], fall: tuple[int, int, int],
        repeated: str) -> None:
    # Spring forward: 02:30 does not exist; it runs once, at 03:00 (the end of the gap).
    ticks = walk(Cron("30 2 * * *", tz), local(tz, *spring) - timedelta(days=1), 3)
    on_spring = [t for t in ticks if t.astimezone(tz).date() == datetime(*spring).date()]
    assert [t.astimezone(tz).strftime("%H:%M") for t in on_spring] == ["03:00"]
    assert [t.astimezone(tz).strftime("%H:%M") for t in ticks] == ["02:30", "03:00", "02:30"]
    # Fall back: the time happens twice; it runs once, at the first (summer time) one.
    cron = Cron(repeated, tz)
    ticks = walk(cron, local(tz, *fall) - timedelta(hours=12), 3)
    on_fall = [t for t in ticks if t.astimezone(tz).date() == datetime(*fall).date()]
    first = local(tz, *fall, *map(int, repeated.split()[1::-1]), fold=0).astimezone(UTC)
    assert on_fall == [first]
    assert [t - s for s, t in pairwise(ticks)] == [
        timedelta(hours=25), timedelta(hours=24)]  # the fall-back day is 25 hours long


def test_a_frequent_cron_expression_ticks_in_both_repeated_hours() -> None:
    cron = Cron("*/30 * * * *", BERLIN)
    ticks = walk(cron, local(BERLIN, 2026, 10, 25, 1, 50), 6)
    assert [t - s for s, t in pairwise(ticks)] == [timedelta(minutes=30)] * 5
    assert len({t.astimezone(BERLIN).strftime("%H:%M") for t in ticks}) == 4  # 02:xx twice


def test_cron_ticks_are_utc_and_follow_the_zone() -> None:
    cron = Cron("0 2 * * *", BERLIN)
    assert cron.next_after(utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 1)  # CET
    assert cron.next_after(utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 0)  # CEST
    assert cron.next_after(utc(2026, 7, 10, 12)).tzinfo is UTC


def test_a_tick_walk_from_inside_the_repeated_hour_never_goes_back() -> None:
    cron = Cron("30 2 * * *", BERLIN)
    inside = local(BERLIN, 2026, 10, 25, 2, 45, fold=1)  # the second 02:45, in CET
    assert cron.next_after(inside) == local(BERLIN, 2026, 10, 26, 2, 30)


@pytest.mark.parametrize(("alias", "after", "expected"), [
    ("@daily", utc(2026, 5, 1, 10), utc(2026, 5, 2)),
    ("@hourly", utc(2026, 5, 1, 10, 1), utc(2026, 5, 1, 11)),
    ("@weekly", utc(2026, 5, 1, 10), utc(2026, 5, 3)),  # Sunday
    ("@monthly", utc(2026, 5, 1, 10), utc(2026, 6, 1)),
    ("@yearly", utc(2026, 5, 1, 10), utc(2027, 1, 1)),
])
def test_cron_aliases(alias: str, after: datetime, expected: datetime) -> None:
    assert Cron(alias, ZoneInfo("UTC")).next_after(after) == expected


def test_cron_ticks_between_two_times_and_after_a_long_downtime() -> None:
    cron = Cron("* * * * *", ZoneInfo("UTC"))
    due, count = cron.ticks(utc(2026, 1, 1), utc(2026, 1, 1, 0, 9), keep=2)
    assert (due, count) == ([utc(2026, 1, 1, 0, 8), utc(2026, 1, 1, 0, 9)], 10)
    # A year of minutes: the scan jumps ahead rather than walking 500,000 ticks.
    due, count = cron.ticks(utc(2025, 1, 1), utc(2026, 1, 1, 0, 9), keep=2)
    assert due == [utc(2026, 1, 1, 0, 8), utc(2026, 1, 1, 0, 9)]
    assert count > 10_000


# -- declaration errors ------------------------------------------------------------------


@pytest.mark.parametrize(("every", "cron", "tz", "message"), [
    (None, None, "UTC", "exactly one of"),
    (timedelta(seconds=1), "* * * * *", "UTC", "exactly one of"),
    (timedelta(0), None, "UTC", "positive"),
    (timedelta(seconds=-5), None, "UTC", "positive"),
    (timedelta(milliseconds=1500), None, "UTC", "whole number of seconds"),
    (None, "61 * * * *", "UTC", "invalid cron expression '61 * * * *'"),
    (None, "* * *", "UTC", "expected 5 fields"),
    (None, "@sometimes", "UTC", "expected 5 fields"),
    (None, "0 0 30 2 *", "UTC", "'0 0 30 2 *'"),  # February 30th never comes
    (None, "0 2 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    (timedelta(hours=1), None, "", "IANA"),
])
def test_bad_timings_are_refused_with_what_is_wrong(
        every: timedelta | None, cron: str | None, tz: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(every, cron, tz)


# -- the policies ------------------------------------------------------------------------

HOURLY = Every(3600, ZoneInfo("UTC"))
LATE = timedelta(minutes=5)


def decide(next_tick: datetime, now: datetime, catch_up: str, **options: object) -> list[str]:
    options = {"catch_up_limit": 100, "max_lateness": LATE, **options}
    result = plan(HOURLY, next_tick, now, catch_up=catch_up, **options)  # type: ignore[arg-type]
    assert result.next_tick > now
    return [t.strftime("%H:%M") for t in result.ticks]


@pytest.mark.parametrize(("catch_up", "on_time", "late", "after_downtime"), [
    ("latest", ["10:00"], ["10:00"], ["13:00"]),
    ("skip", ["10:00"], [], []),
    ("all", ["10:00"], ["10:00"], ["10:00", "11:00", "12:00", "13:00"]),
])
def test_each_catch_up_policy(catch_up: str, on_time: list[str], late: list[str],
                              after_downtime: list[str]) -> None:
    ten = utc(2026, 5, 1, 10)
    assert decide(ten, ten + timedelta(seconds=1), catch_up) == on_time
    assert decide(ten, ten + timedelta(minutes=30), catch_up) == late
    assert decide(ten, utc(2026, 5, 1, 13, 30), catch_up) == after_downtime
    assert decide(ten, ten - timedelta(seconds=1), catch_up) == []  # not due yet


def test_all_is_bounded_and_counts_what_it_passes_over() -> None:
    ten = utc(2026, 5, 1, 10)
    result = plan(HOURLY, ten, utc(2026, 5, 2, 10, 30), catch_up="all", catch_up_limit=3,
                  max_lateness=LATE)
    assert [t.hour for t in result.ticks] == [8, 9, 10]
    assert result.skipped == 22  # 25 due, 3 made
    assert result.next_tick == utc(2026, 5, 2, 11)


def test_overlap_skip_makes_one_tick_at_most_and_none_while_the_last_one_runs() -> None:
    ten = utc(2026, 5, 1, 10)
    assert decide(ten, utc(2026, 5, 1, 13, 30), "all", single=True) == ["13:00"]
    assert decide(ten, utc(2026, 5, 1, 13, 30), "all", single=True, overlap_blocked=True) == []
    blocked = plan(HOURLY, ten, ten + timedelta(seconds=1), catch_up="latest", catch_up_limit=1,
                   max_lateness=LATE, overlap_blocked=True)
    assert (blocked.ticks, blocked.skipped, blocked.next_tick) == ((), 1, utc(2026, 5, 1, 11))


def test_a_new_changed_or_resumed_schedule_starts_after_now_and_after_its_last_tick() -> None:
    now = utc(2026, 5, 1, 10, 30)
    assert first_tick(HOURLY, None, now).next_tick == utc(2026, 5, 1, 11)
    assert first_tick(HOURLY, utc(2026, 5, 1, 11), now).next_tick == utc(2026, 5, 1, 12)
    assert first_tick(HOURLY, None, now).ticks == ()


def test_a_stored_next_tick_off_the_timing_realigns() -> None:  # the timing changed
    result = plan(HOURLY, utc(2026, 5, 1, 10, 59, 59), utc(2026, 5, 1, 10, 59, 59, 500000),
                  catch_up="all", catch_up_limit=10, max_lateness=LATE)
    assert (result.ticks, result.next_tick) == ((), utc(2026, 5, 1, 11))


def test_tick_ids_are_utc_iso_8601() -> None:
    assert tick_id("nightly", local(BERLIN, 2026, 7, 1, 2)) == "nightly@2026-07-01T00:00:00Z"
