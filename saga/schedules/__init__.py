"""Periodic sagas: schedules declared next to the steps (`Saga.schedule`), ticked exactly
once by whichever worker (or `--drain` run) gets to them first.

- `spec`: `Schedule` and `declare()`, the checks made when a schedule is declared;
- `timing`: tick arithmetic (intervals, cron via cronsim, time zones, DST, catch-up);
- `store`: the queries of `sql/schedules.sql`;
- `ticker`: `Ticker`, the one-shot `tick(conn)` and the service thread's `loop(stop)`.
"""

from __future__ import annotations

from .spec import CATCH_UP_LIMIT, MAX_LATENESS, Schedule, declare
from .store import ScheduleStore
from .ticker import Ticker
from .timing import tick_id

__all__ = ["CATCH_UP_LIMIT", "MAX_LATENESS", "Schedule", "ScheduleStore", "Ticker", "declare",
           "tick_id"]
