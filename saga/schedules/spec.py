"""`Schedule`: a periodic saga as declared in code, checked when it is declared.

A schedule is a frozen value that knows its saga and step by name and how to encode
its tick's input: the ticker needs nothing else, and no `Saga`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from .timing import CATCH_UP, UTC, CatchUp, Timing, parse

Overlap = Literal["allow", "skip"]
OVERLAP: Final[tuple[str, ...]] = ("allow", "skip")
MAX_LATENESS: Final = timedelta(minutes=5)  # older than this, a tick is late for "skip"
CATCH_UP_LIMIT: Final = 100  # at most this many missed ticks made at once with "all"
MAX_SCHEDULE_NAME: Final = 128  # the instance id adds "@YYYY-MM-DDTHH:MM:SSZ"
_NAME = re.compile(r"[^\x00-\x1f@]+")  # the "@" separates the schedule from the tick


@dataclass(frozen=True)
class Schedule:
    """A declared schedule: *step* of saga *saga* runs at each tick of *timing*.

    *input* is a value, or a callable taking the tick (an aware datetime in the
    schedule's zone) and returning one; *encode* turns it into the step's stored input.
    """

    saga: str
    name: str
    step: str
    timing: Timing
    encode: Callable[[object], str] = field(repr=False, compare=False)
    input: object = field(default=None, repr=False, compare=False)
    catch_up: CatchUp = "latest"
    catch_up_limit: int = CATCH_UP_LIMIT
    max_lateness: timedelta = MAX_LATENESS
    overlap: Overlap = "allow"

    @property
    def tz(self) -> str:
        return str(self.timing.tz)

    @property
    def expression(self) -> str:
        return self.timing.expression

    @functools.cached_property
    def definition(self) -> str:
        """What a deployment declares, as stored: two deployments that disagree on any
        of it (mid rolling deploy) are told apart by it, and only the one whose
        definition the row holds ticks."""
        return json.dumps({
            "step": self.step, "expression": self.expression, "tz": self.tz,
            "catch_up": self.catch_up, "catch_up_limit": self.catch_up_limit,
            "max_lateness": self.max_lateness.total_seconds(), "overlap": self.overlap,
        }, sort_keys=True)

    def input_for(self, tick: datetime) -> str:
        """The encoded input of the tick at *tick* (UTC); `TypeError` if it cannot be."""
        value = self.input
        if computed(value):
            assert callable(value)
            value = value(tick.astimezone(self.timing.tz))
        return self.encode(value)


def computed(input: object) -> bool:
    """True if *input* is a function of the tick rather than a value (a class is a value:
    it is not called)."""
    return callable(input) and not isinstance(input, type)


def declare(
    saga: str,
    name: str,
    step: str,
    encode: Callable[[object], str],
    *,
    every: timedelta | None = None,
    cron: str | None = None,
    tz: str = "UTC",
    input: object = None,
    catch_up: str = "latest",
    catch_up_limit: int = CATCH_UP_LIMIT,
    max_lateness: timedelta = MAX_LATENESS,
    overlap: str = "allow",
) -> Schedule:
    """Build and check a schedule; raise `ValueError` or `TypeError` naming it and what
    is wrong (its timing, zone, policies, or an input the step cannot take).

    A computed input is called once here, with the next tick, to check what it returns.
    """
    if not isinstance(name, str) or not 0 < len(name) <= MAX_SCHEDULE_NAME or (
            not _NAME.fullmatch(name)):
        raise ValueError(f"schedule name must be 1 to {MAX_SCHEDULE_NAME} characters, "
                         f"without '@' or control characters, got {name!r}")
    where = f"schedule {name!r} of saga {saga!r}"
    try:
        timing = parse(every, cron, tz)
        if catch_up not in CATCH_UP:
            raise ValueError(f"catch_up must be one of {', '.join(CATCH_UP)}, got {catch_up!r}")
        if not isinstance(catch_up_limit, int) or isinstance(catch_up_limit, bool) or (
                catch_up_limit < 1):
            raise ValueError(f"catch_up_limit must be an integer >= 1, got {catch_up_limit!r}")
        if not isinstance(max_lateness, timedelta) or max_lateness < timedelta(0):
            raise ValueError(f"max_lateness must be a timedelta >= 0, got {max_lateness!r}")
        if overlap not in OVERLAP:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAP)}, got {overlap!r}")
        schedule = Schedule(saga, name, step, timing, encode, input, catch_up,  # type: ignore[arg-type]
                            catch_up_limit, max_lateness, overlap)  # type: ignore[arg-type]
        sample = timing.next_after(datetime.now(UTC))
        try:
            schedule.input_for(sample)
        except TypeError as e:
            raise TypeError(f"input: {e}") from None
    except (ValueError, TypeError) as e:
        raise type(e)(f"{where}: {e}") from None
    return schedule
