"""Tick arithmetic: when a schedule's ticks fall, and which of the due ones to run.

Pure functions of their arguments (the clock is passed in as `now`, read from the
database by the ticker), so that time zones, DST days and downtime are unit-tested
without a database. Every datetime here is timezone-aware; ticks are returned in UTC.

- `Every(seconds, tz)`: ticks at `anchor + k * seconds`, elapsed time, where the anchor
  is midnight of 2000-01-01 in *tz*. DST does not move them: `every=1h` ticks on the
  hour, all year, and `every=1d` at local midnight in winter, 01:00 in summer (use cron
  for wall-clock times).
- `Cron(expression, tz)`: a 5-field cron expression (or an `@daily`-style alias) read in
  *tz* by cronsim (the `cron` extra), with Debian cron's DST rules: a time that does
  not exist on a spring-forward day (02:30 in Europe/Berlin) ticks once, at the first
  moment after the gap (03:00); a time that occurs twice on a fall-back day ticks once,
  at its first occurrence (summer time). Expressions that run every hour or more often
  (`*/15 * * * *`) follow elapsed time instead and tick in both repeated hours.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC: Final = timezone.utc
ANCHOR_LOCAL: Final = datetime(2000, 1, 1)  # where interval ticks start, in the zone
MAX_SCAN: Final = 10_000  # cron ticks walked before jumping ahead (long downtime)

CatchUp = Literal["skip", "latest", "all"]
CATCH_UP: Final[tuple[str, ...]] = ("skip", "latest", "all")

# The usual aliases, spelled as the 5-field expressions they stand for.
ALIASES: Final = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class Timing(Protocol):
    """When a schedule ticks."""

    @property
    def tz(self) -> ZoneInfo:
        """The zone the ticks are computed in."""
        ...

    @property
    def expression(self) -> str:
        """How it reads: `every 300s`, or the cron expression as given."""
        ...

    def next_after(self, t: datetime) -> datetime:
        """The first tick strictly after *t*, in UTC."""
        ...

    def ticks(self, start: datetime, end: datetime, keep: int) -> tuple[list[datetime], int]:
        """The last *keep* ticks in [start, end], oldest first, and how many there are."""
        ...


def zone(tz: str) -> ZoneInfo:
    """The IANA zone named *tz*; `ValueError` if there is none."""
    if not isinstance(tz, str) or not tz:
        raise ValueError(f"tz must be an IANA time zone name such as 'Europe/Berlin', got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r} (an IANA name such as 'Europe/Berlin' "
                         "is expected)") from None


@dataclass(frozen=True)
class Every:
    """Ticks every *seconds*, counted from midnight of 2000-01-01 in *tz*."""

    seconds: int
    tz: ZoneInfo

    @property
    def expression(self) -> str:
        return f"every {self.seconds}s"

    @property
    def anchor(self) -> datetime:
        return ANCHOR_LOCAL.replace(tzinfo=self.tz).astimezone(UTC)

    def _index(self, t: datetime) -> int:
        """The number of the last tick at or before *t*."""
        return int((t - self.anchor) // timedelta(seconds=self.seconds))

    def _at(self, k: int) -> datetime:
        return self.anchor + timedelta(seconds=self.seconds * k)

    def next_after(self, t: datetime) -> datetime:
        return self._at(self._index(t) + 1)

    def ticks(self, start: datetime, end: datetime, keep: int) -> tuple[list[datetime], int]:
        first, last = self._index(start), self._index(end)
        if self._at(first) < start:
            first += 1
        count = max(0, last - first + 1)
        return [self._at(k) for k in range(max(first, last - keep + 1), last + 1)], count


@dataclass(frozen=True)
class Cron:
    """Ticks where the cron *expression* matches, read in *tz* (cronsim)."""

    given: str
    tz: ZoneInfo

    def __post_init__(self) -> None:
        self._sim(datetime(2000, 1, 1, tzinfo=self.tz))  # raises ValueError if invalid

    @property
    def expression(self) -> str:
        return self.given

    @property
    def fields(self) -> str:
        return ALIASES.get(self.given.strip().lower(), self.given)

    def _sim(self, t: datetime, reverse: bool = False) -> Iterator[datetime]:
        try:
            from cronsim import CronSim, CronSimError
        except ImportError:
            raise ValueError("cron schedules need the cron extra: pip install 'pgsaga[cron]' "
                             "(intervals, every=timedelta(...), need nothing)") from None
        if len(self.fields.split()) != 5:
            raise ValueError(f"invalid cron expression {self.given!r}: expected 5 fields "
                             "(minute hour day-of-month month day-of-week) or an alias "
                             f"({', '.join(ALIASES)})")
        try:
            return CronSim(self.fields, t.astimezone(self.tz), reverse=reverse)
        except CronSimError as e:
            raise ValueError(f"invalid cron expression {self.given!r}: {e}") from None

    def _forward(self, t: datetime) -> Iterator[datetime]:
        """Ticks strictly after *t*, in UTC. cronsim walks local wall time, where a time
        in a repeated hour can map to an instant before *t*: those are passed over."""
        for local in self._sim(t):
            tick = local.astimezone(UTC)
            if tick > t:
                yield tick

    def next_after(self, t: datetime) -> datetime:
        for tick in self._forward(t):
            return tick
        raise ValueError(f"cron expression {self.given!r} never matches")

    def ticks(self, start: datetime, end: datetime, keep: int) -> tuple[list[datetime], int]:
        kept: collections.deque[datetime] = collections.deque(maxlen=keep)
        count = 0
        cursor = start - timedelta(microseconds=1)  # start itself counts
        for tick in self._forward(cursor):
            if tick > end:
                break
            kept.append(tick)
            count += 1
            if count == MAX_SCAN:
                # Long downtime on a frequent expression: jump to the last *keep* ticks
                # before *end* (found walking back) instead of walking every one. The
                # count is then a lower bound; it only feeds the `skipped` figure.
                back = [t.astimezone(UTC) for t in itertools.islice(
                    self._sim(end, reverse=True), keep + 1)]
                restart = min(back) if back else end
                if restart > tick:
                    tail, _ = self.ticks(restart, end, keep)
                    return tail, count + len(tail)
        return list(kept), count


def parse(every: timedelta | None, cron: str | None, tz: str) -> Timing:
    """The timing of `every=` or `cron=` (exactly one); `ValueError` naming what is wrong."""
    if (every is None) == (cron is None):
        raise ValueError("give exactly one of every=timedelta(...) or cron='...'")
    where = zone(tz)
    if every is not None:
        if not isinstance(every, timedelta):
            raise TypeError(f"every must be a datetime.timedelta, got {every!r}")
        if every <= timedelta(0):
            raise ValueError(f"every must be a positive interval, got {every!r}")
        if every % timedelta(seconds=1):
            raise ValueError(f"every must be a whole number of seconds, got {every!r}")
        return Every(int(every.total_seconds()), where)
    if not isinstance(cron, str) or not cron.strip():
        raise ValueError(f"cron must be a cron expression such as '0 2 * * *', got {cron!r}")
    timing = Cron(cron.strip(), where)
    timing.next_after(datetime.now(UTC))  # an expression that never matches fails here
    return timing


@dataclass(frozen=True, slots=True)
class Plan:
    """What one tick of a schedule does: create *ticks*, pass over *skipped*, and wait
    for *next_tick*."""

    ticks: tuple[datetime, ...]
    skipped: int
    next_tick: datetime


def first_tick(timing: Timing, last_tick: datetime | None, now: datetime) -> Plan:
    """A new, changed or resumed schedule: no tick now; the first one after now (and
    after the last tick it made, so that no tick is ever made twice)."""
    after = now if last_tick is None else max(last_tick, now)
    return Plan((), 0, timing.next_after(after))


def plan(timing: Timing, next_tick: datetime, now: datetime, *, catch_up: CatchUp,
         catch_up_limit: int, max_lateness: timedelta, overlap_blocked: bool = False,
         single: bool = False) -> Plan:
    """Decide which due ticks (from the stored *next_tick* up to *now*) to create.

    The latest due tick is on time if it is at most *max_lateness* old; every other due
    tick is missed (a later one came due before anyone ticked). `latest` makes only the
    latest due tick, on time or not; `skip` makes it only if it is on time; `all` makes
    every due tick, the last *catch_up_limit* of them. *single* (overlap="skip") keeps
    only the last, and *overlap_blocked* (the previous tick's saga still runs) none.
    """
    if next_tick > now:
        return Plan((), 0, next_tick)
    keep = catch_up_limit if catch_up == "all" and not single else 1
    due, count = timing.ticks(next_tick, now, keep)
    if not due:  # next_tick was not a tick of this timing: realign
        return Plan((), 0, timing.next_after(now))
    latest = due[-1]
    if overlap_blocked:
        chosen: list[datetime] = []
    elif catch_up == "skip":
        chosen = [latest] if now - latest <= max_lateness else []
    else:
        chosen = due
    return Plan(tuple(chosen), count - len(chosen), timing.next_after(latest))


def tick_id(schedule: str, tick: datetime) -> str:
    """The instance id of a tick: `<schedule>@<tick in UTC, ISO 8601>`, the same in
    every process, so that a tick made twice is one row."""
    return f"{schedule}@{tick.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
