"""`Ticker`: makes the due ticks of the schedules declared for one database and schema.

Exactly once per tick, with no leader: any number of tickers (worker processes,
`--drain` runs, on any hosts) may serve the same schedules. Each tick of a row is one
transaction: lock the row (`FOR UPDATE SKIP LOCKED`, so a row another ticker holds is
simply passed over), create the tick's instance under its deterministic id
`<schedule>@<tick UTC>` (`ON CONFLICT DO NOTHING`) and advance `next_tick`, then commit.
A crash anywhere before the commit undoes both; after it, both stand. Only row locks
are taken, never session-level advisory locks, so it works through PgBouncer in
transaction mode.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Final

from psycopg.errors import InsufficientPrivilege
from psycopg_pool import ConnectionPool

from ..pools import autocommit
from .spec import Schedule
from .store import Conn, Due, Move, ScheduleStore, Tick
from .timing import first_tick, plan, tick_id

logger = logging.getLogger(__name__)

TICK_POLL: Final = 1.0  # idle tickers look again at least this often (pause, resume)
TICK_BATCH: Final = 100  # schedule rows locked per transaction
RECHECK: Final = 0.2  # wait when a due row is held by another ticker
UNFINISHED: Final = (0, 1)  # PENDING, RUNNING: the previous tick's saga still runs


class Ticker:
    """Serve the schedules *declared* (by saga name; a saga with none retires its rows)
    on *pool*'s database in *schema*."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        schema: str,
        declared: Mapping[str, Sequence[Schedule]],
        *,
        poll_interval: float = TICK_POLL,
        batch: int = TICK_BATCH,
    ) -> None:
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval!r}")
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        self.pool = pool
        self.store = ScheduleStore(schema)
        self.declared = {saga: list(schedules) for saga, schedules in declared.items()}
        self.poll_interval = float(poll_interval)
        self.batch = batch
        self.made = 0  # instances created by this ticker
        self._warned = False  # about a role that may not read the schedule table

    def __repr__(self) -> str:
        count = sum(len(s) for s in self.declared.values())
        return f"<Ticker schema={self.store.schema!r} schedules={count}>"

    @property
    def serves(self) -> bool:
        """True if any schedule is declared: else only `declare` has work to do."""
        return any(self.declared.values())

    # -- one-shot steps (a test, or a drain, calls them directly) -------------------------

    def declare(self, conn: Conn) -> None:
        """Record the declared schedules (and retire the others of each saga) in one
        transaction.

        A saga that declares no schedule writes nothing unless rows of it are stored
        (those it retires, and reports); if the role may not even read the table, it
        is passed over with a warning. So sagas without schedules run under a role
        that has no grant on `schedule` (a schema upgraded to schedules, say).
        """
        with conn.transaction():
            for saga, schedules in self.declared.items():
                if schedules:
                    self.store.declare(conn, saga, schedules)
                    continue
                stored = self._stored(conn, saga)
                if stored:
                    retired = self.store.retire(conn, saga)
                    if retired:
                        logger.warning(
                            "saga %s declares no schedule any more: retired %s", saga,
                            ", ".join(retired), extra={"action": "schedule_retired",
                                                       "saga": saga})

    def _stored(self, conn: Conn, saga: str) -> list[str]:
        """The live schedules stored for *saga*; none if this role may not read them."""
        try:
            # A savepoint: the denied SELECT must not abort the declaring transaction.
            with conn.transaction():
                return self.store.stored(conn, saga)
        except InsufficientPrivilege as e:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "schedules not checked: this role may not read %s.schedule (%s); "
                    "sagas without schedules run as they are, and a schedule removed from "
                    "the code is retired by a worker whose role may", self.store.schema,
                    str(e).strip().splitlines()[0], extra={"action": "schedule_no_grant",
                                                           "saga": saga})
            return []

    def tick(self, conn: Conn) -> int:
        """Make every tick that is due now; return the instances created."""
        made = 0
        for saga, schedules in self.declared.items():
            if not schedules:
                continue
            by_name = {s.name: s for s in schedules}
            while True:
                # One transaction per batch: the rows stay locked until their ticks and
                # next_tick commit together, so no other ticker can make them too.
                with conn.transaction():
                    rows = self.store.claim(conn, saga, schedules, self.batch)
                    moves = [self._decide(by_name[row.name], row) for row in rows]
                    created = self.store.advance(conn, saga, moves) if moves else set()
                self._report(moves, created)
                made += len(created)
                if len(rows) < self.batch:
                    break
        self.made += made
        return made

    def next_due(self, conn: Conn) -> float | None:
        """Seconds until one of the declared schedules is due (<= 0: now); None if none."""
        found = [self.store.next_due(conn, saga, schedules)
                 for saga, schedules in self.declared.items() if schedules]
        due = [d for d in found if d is not None]
        return min(due) if due else None

    def run_once(self) -> int:
        """Declare, then make what is due (a `--drain` run does this before it looks for
        due rows); return the instances created."""
        with autocommit(self.pool) as conn:
            self.declare(conn)
            return self.tick(conn) if self.serves else 0

    # -- the service thread -------------------------------------------------------------

    def loop(self, stop: threading.Event) -> None:
        """Declare, then tick until *stop* is set: at each schedule's next tick, and every
        poll interval (for a resumed or changed schedule).

        Declaring happens once, when the ticker starts (and again after a failure): the
        deployment that started last rules, and a still-running older one leaves the
        rows it no longer matches alone instead of fighting over them.
        """
        declared = False
        failures = 0
        while not stop.is_set():
            try:
                with autocommit(self.pool) as conn:
                    if not declared:
                        self.declare(conn)
                        declared = True
                    if not self.serves:
                        return  # nothing to tick: declaring retired what was to retire
                    self.tick(conn)
                    due_in = self.next_due(conn)
                wait = self.poll_interval if due_in is None else (
                    min(self.poll_interval, due_in if due_in > 0 else RECHECK))
                failures = 0
            except Exception:  # log and go on: the loop never dies
                failures += 1
                wait = min(self.poll_interval * 5, 0.1 * 2.0 ** min(failures, 8))
                wait *= random.uniform(0.5, 1.0)
                logger.exception("schedule tick failed, again in %.1fs", wait,
                                 extra={"action": "schedule_error"})
            stop.wait(wait)

    # -- one row ------------------------------------------------------------------------

    def _decide(self, schedule: Schedule, row: Due) -> Move:
        """What the locked *row* becomes: pure, but for a computed input's call."""
        if row.next_tick is None:  # new, changed or resumed: start from now
            decided = first_tick(schedule.timing, row.last_tick, row.now)
        else:
            blocked = schedule.overlap == "skip" and row.last_status in UNFINISHED
            decided = plan(schedule.timing, row.next_tick, row.now,
                           catch_up=schedule.catch_up, catch_up_limit=schedule.catch_up_limit,
                           max_lateness=schedule.max_lateness, overlap_blocked=blocked,
                           single=schedule.overlap == "skip")
        ticks: list[Tick] = []
        error = None
        for at in decided.ticks:
            try:
                ticks.append(Tick(at, tick_id(schedule.name, at), schedule.input_for(at)))
            except Exception as e:  # the input was checked at declaration; a computed
                # one can still fail: the tick is passed over and the error kept
                error = f"tick {at.isoformat()}: {type(e).__name__}: {e}"
                logger.error("schedule %s of saga %s: no input for %s", schedule.name,
                             schedule.saga, error, extra={"action": "schedule_input_error",
                                                          "saga": schedule.saga})
        return Move(schedule, ticks, decided.next_tick,
                    decided.skipped + len(decided.ticks) - len(ticks), error)

    @staticmethod
    def _report(moves: Sequence[Move], created: set[str]) -> None:
        for move in moves:
            schedule = move.schedule
            made = [t.instance for t in move.ticks if t.instance in created]
            if len(made) < len(move.ticks):  # made by another ticker: only after a reset
                logger.warning("schedule %s of saga %s: %d tick(s) existed already",
                               schedule.name, schedule.saga, len(move.ticks) - len(made),
                               extra={"action": "schedule_tick_exists", "saga": schedule.saga})
            if made:
                logger.info("schedule %s of saga %s: made %s", schedule.name, schedule.saga,
                            ", ".join(made), extra={"action": "schedule_tick",
                                                    "saga": schedule.saga})
