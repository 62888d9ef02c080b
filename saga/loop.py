"""One worker thread's claim loop: claim due rows, run them, sleep until woken.

`WorkLoop.loop()` is one tick (claim and run what is due, or wait), which a test can
call directly; `WorkLoop.run()` repeats it until the runner stops. What the threads of
one runner share (lanes, the stop event, the wake-up, the rows in flight) is a `Crew`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from .execution import Execution, RunStats
from .lane import InFlight, Lane, Wakeup
from .observe import Observers
from .pools import Lent
from .spec import SagaSpec, backoff
from .store import Claim, Claimed, Found, Lease

logger = logging.getLogger(__name__)

IDLE_RECHECK: Final = 0.5  # idle wait when a due row is locked by another transaction
LANE_TIMEOUT: Final = 5.0  # how long a worker waits for a pooled connection to one database
RETRY_FIRST: Final = 0.1  # seconds before looking again after a database error...
RETRY_MOST: Final = 25.6  # ...doubling up to this (and never beyond the poll interval)


@dataclass(eq=False)
class Crew:
    """What the worker threads of one runner share."""

    runner_id: str
    lanes: list[Lane]
    workers: int
    poll_interval: float
    heartbeat_timeout: float
    heartbeat_interval: float
    claim_batch: int
    stats: RunStats = field(default_factory=RunStats)
    observers: Observers = field(default_factory=Observers)
    stop: threading.Event = field(default_factory=threading.Event)  # stop claiming
    in_flight: InFlight = field(default_factory=InFlight)

    def __post_init__(self) -> None:
        self.wakeup = Wakeup()

    def halt(self) -> None:
        """Stop claiming, and wake every idle thread to see it. Idempotent."""
        self.stop.set()
        self.wakeup.notify(self.workers)

    def retry_pause(self, failures: int) -> float:
        """How long to wait after *failures* consecutive database errors (jittered)."""
        return backoff(failures + 1, RETRY_FIRST, min(self.poll_interval, RETRY_MOST))


class WorkLoop:
    """The loop of one worker thread: it holds one pooled connection per lane."""

    def __init__(self, crew: Crew, *, drain: bool = False) -> None:
        self.crew = crew
        self.drain = drain
        self._lent = {id(lane): _lent(lane) for lane in crew.lanes}
        self._failures = 0  # consecutive ticks that failed on a database error
        self._token = 0  # the wake-ups seen when this thread last looked for work
        self._limit = crew.claim_batch  # the limit of the last claim
        # Per saga with a per-key limit, the last key this thread claimed: its next claim
        # visits the keys after it first (round-robin; see claim_limited).
        self._after: dict[str, str] = {}

    def run(self) -> None:
        """Tick until the runner stops (or a drain finds nothing more); give the
        connections back."""
        try:
            while not self.crew.stop.is_set() and self.loop():
                pass
        finally:
            for lent in self._lent.values():
                lent.release()

    def loop(self) -> bool:
        """One tick: claim and run what is due, else wait for a wake-up, the next due
        time or the poll interval. Return False when the thread should end."""
        crew = self.crew
        # Taken before the thread looks anywhere (the buffer, then the claim): a wake-up
        # after this point, which what it looks at may have missed, makes it look again.
        self._token = crew.wakeup.token()
        try:
            ran, idle_for, looked_everywhere = self._cycle()
            self._failures = 0
        except PoolClosed:
            logger.error("the saga's pool was closed under the runner: stopping",
                         extra={"action": "pool_closed", "runner": crew.runner_id})
            crew.halt()
            return False
        except (psycopg.OperationalError, PoolTimeout) as e:
            self._failures += 1
            pause = crew.retry_pause(self._failures)
            logger.warning("database unavailable, retrying in %.1fs: %s", pause, e,
                           extra={"action": "db_error", "runner": crew.runner_id})
            crew.stop.wait(pause)
            for lane in crew.lanes:  # after a restart, drop the pool's dead connections
                lane.pool.check()
            return True
        except Exception:  # log and go on: a worker loop never dies
            logger.exception("worker loop failed", extra={"action": "work_loop_error"})
            crew.stop.wait(crew.poll_interval)
            return True
        if ran:
            return True
        if self.drain and looked_everywhere:
            return False
        if idle_for >= crew.poll_interval:
            # Nothing due is known: jitter the poll, so that idle threads (woken together
            # at start) drift apart and a poll-only worker looks every interval / threads
            # or so, not all threads at once every interval.
            idle_for *= random.uniform(0.5, 1.0)
        crew.wakeup.wait(idle_for, self._token)
        return True

    def _cycle(self) -> tuple[bool, float, bool]:
        """Claim and run what is due in each lane.

        Return whether anything ran, how long to idle, and whether every database was
        looked at (a drain may only end when it was, and nothing was due).
        """
        crew = self.crew
        ran, looked_everywhere = False, True
        idle_for = crew.poll_interval
        failure: Exception | None = None
        for lane in crew.lanes:
            if lane.heartbeat.expired:  # fenced: what we claimed would be taken back
                looked_everywhere, idle_for = False, min(idle_for, crew.heartbeat_interval)
                continue
            wait = lane.wait_before_use()
            if wait > 0:
                looked_everywhere, idle_for = False, min(idle_for, wait)
                continue
            try:
                lane_ran, lane_idle = self._lane_cycle(lane)
            except PoolClosed:
                raise
            except (psycopg.OperationalError, PoolTimeout) as e:
                # One database down must not stall the others: skip it for a while.
                lane.failed(crew.retry_pause(lane.failures + 1))
                failure, looked_everywhere = e, False
                continue
            lane.succeeded()
            ran, idle_for = ran or lane_ran, min(idle_for, lane_idle)
        if failure is not None and not ran:
            raise failure
        return ran, idle_for, looked_everywhere

    def _lane_cycle(self, lane: Lane) -> tuple[bool, float]:
        """Claim and run what is due in *lane*; return whether to look again at once
        (False when the last claim found nothing), and how long to idle otherwise."""
        crew = self.crew
        ran = False
        idle_for = crew.poll_interval
        lent = self._lent[id(lane)]
        if self._run_buffered(lane, lent):
            return True, idle_for
        for spec in lane.specs:
            if crew.stop.is_set():
                return ran, 0.0
            # The claim commits on its own (autocommit); the rows are in flight a moment
            # later. release_stale spares rows claimed in the last STALE_AGE seconds, so
            # it never hands back a row between the two. If the claim fails after its
            # commit landed, release_stale returns the rows once that age has passed.
            found: Found | None = lane.store.claim_or_due(lent.get(timeout=LANE_TIMEOUT),
                                                          self._claim(spec))
            worked = False
            while found is not None and found.rows:
                worked = True
                found = self._start(lane, spec, lent, found.rows)
            if worked and found is None:
                ran = True  # the last outcome came without a claim: look again at once
            elif found is not None and found.due_in is not None and not ran:
                # Due yet not claimed means locked by someone else (a caller's open
                # transaction): look again later, without spinning.
                idle_for = min(idle_for, found.due_in if found.due_in > 0 else IDLE_RECHECK)
        return ran, idle_for

    def _claim(self, spec: SagaSpec) -> Claim:
        """The next claim for *spec*: as many rows as there are idle threads (and this
        one), at least the claim batch."""
        crew = self.crew
        self._limit = max(crew.claim_batch, 1 + crew.wakeup.idle)
        return Claim(crew.runner_id, spec.name, list(spec.steps), self._limit,
                     spec.limits_json, self._after.get(spec.name))

    def _start(self, lane: Lane, spec: SagaSpec, lent: Lent,
               rows: list[Claimed]) -> Found | None:
        """Run the first of *rows* (just claimed), leaving the rest to whichever threads
        are free first; return what the claim folded into its last outcome found."""
        crew = self.crew
        crew.in_flight.hold(spec.name, rows)
        keys = [row.key for row in rows if row.key is not None]
        if keys:
            self._after[spec.name] = keys[-1]
        logger.debug("claimed %d instance(s) of %s", len(rows), spec.name,
                     extra={"action": "claim", "runner": crew.runner_id})
        # A full claim means there may be more: wake one more thread to look.
        lane.buffer(spec, rows[1:])
        woken = len(rows) - 1 + (len(rows) == self._limit)
        if woken:
            crew.wakeup.notify(woken)

        claimed_at = time.monotonic()  # for the claim-to-start delay (StepEvent)

        def fold() -> Claim | None:
            # Only where one saga is served (else the folded saga would starve the
            # others), and not while claimed rows wait in the buffer or we are fenced.
            # Not under limits: their claim is claim_limited's, after the outcome has
            # committed (so that it sees the slot the outcome frees).
            # The token comes first, as in loop(): then the buffer, then the claim.
            self._token = crew.wakeup.token()
            if (crew.stop.is_set() or len(lane.specs) != 1 or lane.has_buffered
                    or lane.heartbeat.expired or spec.limits):
                return None
            return self._claim(spec)

        return self._run_claimed(lane, spec, lent, rows[0], fold, claimed_at)

    def _run_buffered(self, lane: Lane, lent: Lent) -> bool:
        """Run one row another thread claimed in a batch, if any; False if none."""
        crew = self.crew
        while (item := lane.next_claimed()) is not None:
            claimed_at, spec, row = item
            if time.monotonic() - claimed_at < crew.heartbeat_timeout / 2:
                self._run_claimed(lane, spec, lent, row, None, claimed_at)
                return True
            # Waited too long (every thread busy, or fenced): its lease may have lapsed,
            # and running it might run a step another runner runs too. Hand it back;
            # the lease guard makes that a no-op if it is someone else's by now.
            try:
                lane.store.release(lent.get(timeout=LANE_TIMEOUT), crew.runner_id, [row.id])
            finally:
                crew.in_flight.let_go([row.id])
        return False

    def _run_claimed(self, lane: Lane, spec: SagaSpec, lent: Lent, row: Claimed,
                     fold: Callable[[], Claim | None] | None,
                     claimed_at: float | None = None) -> Found | None:
        crew = self.crew
        try:
            if crew.stop.is_set():  # claimed, never started
                lane.store.release(lent.get(timeout=LANE_TIMEOUT), crew.runner_id, [row.id])
                return None
            execution = Execution(spec, lane.store, lent, row, crew.runner_id, crew.stop,
                                  crew.stats, crew.observers, patience=crew.heartbeat_timeout,
                                  on_step=self._running, fold=fold, claimed_at=claimed_at)
            # If the run fails after a folded claim, the rows it claimed are in no
            # registry: release_stale hands them back once STALE_AGE has passed.
            execution.run()
            if execution.found is not None:
                crew.in_flight.hold(spec.name, execution.found.rows)
            return execution.found
        finally:
            crew.in_flight.let_go([row.id])

    def _running(self, lease: Lease, step: str) -> None:
        self.crew.in_flight.running(lease.id, step)


def _lent(lane: Lane) -> Lent:
    """The connection a worker thread keeps for *lane*.

    Generic plans on it (the claim would be planned on every call), set as it is
    borrowed and undone before the pool gets it back; see Store.plan_generically. Not in
    pooler mode: a session setting would stay on a server connection that other clients
    get next, and without prepared statements there is no cached plan to make generic.
    """
    if lane.pooler:
        return Lent(lane.pool)
    return Lent(lane.pool, on_borrow=lane.store.plan_generically,
                on_release=lane.store.plan_as_usual)
