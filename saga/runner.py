"""`Runner`: one per worker process. Worker threads claim and run due instances; a
heartbeat thread keeps the runner alive and reaps dead ones; a listener thread turns
NOTIFY into wake-ups.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql
from psycopg_pool import PoolClosed, PoolTimeout

from .execution import Execution, RunStats
from .lane import Lane, Wakeup
from .liveness import HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, Heartbeat
from .pools import borrow, give_back
from .schedules.ticker import Ticker
from .store import Claimed, Conn

if TYPE_CHECKING:
    from .core import Saga

__all__ = ["RunStats", "Runner"]

logger = logging.getLogger(__name__)

POLL_INTERVAL: Final = 2.0  # idle workers look for due rows at least this often
GRACE: Final = 30.0  # how long a stop waits for in-flight steps
CLAIM_BATCH: Final = 1  # rows one claim takes
IDLE_RECHECK: Final = 0.5  # idle wait when a due row is locked by another transaction
LISTEN_TICK: Final = 0.25  # how often the listener looks up from NOTIFY to check for stop
LANE_TIMEOUT: Final = 5.0  # how long a worker waits for a pooled connection to one database


class Runner:
    """Run the steps of *sagas* on *workers* threads until stopped (or drained)."""

    def __init__(
        self,
        sagas: Sequence[Saga],
        *,
        workers: int = 8,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
        grace: float = GRACE,
        claim_batch: int = CLAIM_BATCH,
    ) -> None:
        if not sagas:
            raise ValueError("a runner needs at least one saga")
        names = [f"{s.schema}.{s.name}" for s in sagas]
        if len(set(names)) != len(names):
            raise ValueError(f"saga names must be unique per schema in one runner, got {names}")
        for s in sagas:
            if not s.steps:
                raise ValueError(f"saga {s.name!r} has no steps")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if not heartbeat_timeout > 0:
            raise ValueError(f"heartbeat_timeout must be > 0, got {heartbeat_timeout!r}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval!r}")
        if not grace >= 0:
            raise ValueError(f"grace must be >= 0, got {grace!r}")
        if not isinstance(claim_batch, int) or claim_batch < 1:
            raise ValueError(f"claim_batch must be an integer >= 1, got {claim_batch!r}")
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.sagas = list(sagas)
        self.workers = workers
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.heartbeat_interval = min(HEARTBEAT_INTERVAL, self.heartbeat_timeout / 4)
        self.poll_interval = float(poll_interval)
        self.grace = float(grace)
        self.claim_batch = claim_batch
        self.stats = RunStats()
        self._stop = threading.Event()  # stop claiming
        self._abort = threading.Event()  # a second signal: stop waiting for anything
        # Signals received and not yet acted on. The handler only appends here: it runs
        # in the main thread between two bytecodes, maybe while that thread holds the
        # lock inside an Event or a Condition, so taking any lock there can deadlock.
        self._signalled: list[int] = []
        self._done = threading.Event()  # heartbeat and listener end
        self._wakeup = Wakeup(workers)
        self._lanes: list[Lane] = []
        # Row ids the worker threads hold, in every lane: `release_stale` must spare them.
        # One set for the whole runner, since two lanes can share a table (two pools onto
        # one schema); ids of different tables only ever make it spare a row too many.
        self._in_flight: set[int] = set()
        self._in_flight_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Runner {self.id!r} workers={self.workers}>"

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ----------------------------------------------------------------------

    def run(self, *, drain: bool = False) -> RunStats:
        """Run until `stop()` or a signal; with *drain*, until nothing is due. Block.

        SIGTERM/SIGINT handlers are installed when called from the main thread (and the
        old ones restored): the first signal stops gracefully, a second at once.
        """
        with self._signals():
            self._lanes = self._make_lanes()
            for lane in self._lanes:
                with lane.store.tables_required(), lane.pool.connection() as conn:
                    with conn.transaction():
                        lane.heartbeat.register(conn)
                    if drain:
                        # A cron drain may be the only runner there is: recover what dead
                        # runners left RUNNING before looking for due work (sparing any
                        # that may be reconnecting after an outage).
                        with conn.transaction():
                            lane.heartbeat.beat(conn, reap=True, margin=self.heartbeat_timeout)
            # Schedules (saga.schedules): a ticker per lane; a drain makes the due ticks
            # once, before its workers look for due rows.
            tickers = [Ticker(lane.pool, lane.store.schema,
                              {s.name: list(s.schedules.values()) for s in lane.sagas})
                       for lane in self._lanes]
            if drain:
                for lane, ticker in zip(self._lanes, tickers, strict=True):
                    with lane.store.tables_required():
                        ticker.run_once()
            logger.info("runner %s started: %d worker(s) for %s%s", self.id, self.workers,
                        ", ".join(s.name for s in self.sagas), " (drain)" if drain else "",
                        extra={"action": "runner_start", "runner": self.id})
            started = time.monotonic()
            service = [self._thread(f"saga-heartbeat-{i}", lane.heartbeat.loop, self._done)
                       for i, lane in enumerate(self._lanes)]
            if not drain:
                service += [self._thread(f"saga-listener-{i}", self._listen_loop, lane)
                            for i, lane in enumerate(self._lanes)]
                service += [self._thread(f"saga-schedules-{i}", ticker.loop, self._stop)
                            for i, ticker in enumerate(tickers)]  # schedules
            workers = [self._thread(f"saga-worker-{i}", self._work_loop, drain)
                       for i in range(self.workers)]
            try:
                while any(t.is_alive() for t in workers) and not self._stop.is_set():
                    self._stop.wait(0.2)
                    self._take_signals()
            finally:
                self._stop.set()
                self._wakeup.notify(self.workers)
                self._shut_down(workers, service)
            logger.info("runner %s stopped after %.1fs: %s", self.id, time.monotonic() - started,
                        self.stats.summary(), extra={"action": "runner_stop", "runner": self.id})
        return self.stats

    def stop(self) -> None:
        """Stop claiming; `run()` then lets in-flight steps finish and returns. Idempotent."""
        self._stop.set()
        self._wakeup.notify(self.workers)

    def _shut_down(self, workers: list[threading.Thread], service: list[threading.Thread]) -> None:
        deadline = time.monotonic() + self.grace
        for t in workers:
            while t.is_alive() and not self._abort.is_set():
                t.join(min(0.2, max(0.0, deadline - time.monotonic())))
                self._take_signals()
                if time.monotonic() >= deadline:
                    break
        if self._abort.is_set():
            # Stop heartbeating, so that other runners recover our rows once the timeout
            # passes, but wait for nothing (the database may be what hangs).
            self._done.set()
            logger.warning("stopped at once: claimed rows return when the heartbeat lapses",
                           extra={"action": "abort", "runner": self.id})
            return
        self._release_buffered()
        stragglers = [t.name for t in workers if t.is_alive()]
        if stragglers:
            logger.warning("%d step(s) still running after the %.0fs grace period: %s",
                           len(stragglers), self.grace, ", ".join(stragglers),
                           extra={"action": "grace_expired", "runner": self.id})
        self._done.set()
        for t in service:
            t.join(5.0)
        # Deleting the runner row lets other runners recover a straggler's row at once.
        for lane in self._lanes:
            try:
                with lane.pool.connection(timeout=5.0) as conn, conn.transaction():
                    lane.store.delete_runner(conn, self.id)
            except (psycopg.Error, PoolTimeout) as e:
                logger.warning("could not delete runner row: %s", e,
                               extra={"action": "runner_delete_failed", "runner": self.id})

    def _release_buffered(self) -> None:
        """Hand back the rows claimed in a batch that no thread started."""
        for lane in self._lanes:
            rows = lane.unclaim_all()
            if not rows:
                continue
            ids = [r.id for r in rows]
            try:
                with lane.pool.connection(timeout=5.0) as conn, conn.transaction():
                    lane.store.release(conn, self.id, ids)
            except (psycopg.Error, PoolTimeout) as e:  # recovered when the runner row goes
                logger.warning("could not hand back %d claimed row(s): %s", len(ids), e,
                               extra={"action": "release_failed", "runner": self.id})
            finally:
                self._let_go(ids)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            self._signalled.append(signum)  # list.append takes no lock: see __init__

        previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, old in previous.items():
                signal.signal(s, old)

    def _take_signals(self) -> None:
        """Act on the signals received (from the main thread's wait loops): the first
        stops gracefully, a second at once."""
        while self._signalled:
            signum = self._signalled.pop(0)
            if self._stop.is_set():
                self._abort.set()
            else:
                logger.info("%s: stopping gracefully (again to stop at once)",
                            signal.Signals(signum).name, extra={"action": "signal"})
                self.stop()

    @property
    def aborted(self) -> bool:
        """True if a second signal cut the graceful stop short."""
        return self._abort.is_set()

    def _make_lanes(self) -> list[Lane]:
        """Group the sagas by database and schema; size each pool for the workers."""
        lanes: dict[tuple[str, str], Lane] = {}
        for s in self.sagas:
            key = (s.database(), s.schema)
            if key in lanes:
                lanes[key].sagas.append(s)  # served through the first saga's pool
                continue
            # A worker thread holds one connection, and a `conn` step's set_state briefly
            # takes another; two spare ones keep that from waiting long.
            lane = Lane(s.ensure_pool_size(self.workers + 2), s.store, [s])
            lane.heartbeat = Heartbeat(self.id, lane, self.heartbeat_timeout,
                                       self.heartbeat_interval, self._held)
            lanes[key] = lane
        return list(lanes.values())

    def _retry_pause(self, failures: int) -> float:
        """Exponential, jittered, capped at the poll interval: how long to wait after errors."""
        return min(self.poll_interval, 0.1 * 2.0 ** min(failures, 8)) * random.uniform(0.5, 1.0)

    def _thread(self, name: str, target: Any, *args: object) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        return t

    # -- worker threads -----------------------------------------------------------------

    def _work_loop(self, drain: bool) -> None:
        held: dict[int, Conn] = {}  # this thread's connection to each lane, by id(lane)
        try:
            self._work(drain, held)
        finally:
            for lane in self._lanes:
                if id(lane) in held:
                    give_back(lane.pool, held.pop(id(lane)))

    def _work(self, drain: bool, held: dict[int, Conn]) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                ran, idle_for, looked_everywhere = self._cycle(held)
                failures = 0
            except PoolClosed:
                logger.error("the saga's pool was closed under the runner: stopping",
                             extra={"action": "pool_closed", "runner": self.id})
                self.stop()
                return
            except (psycopg.OperationalError, PoolTimeout) as e:
                failures += 1
                pause = self._retry_pause(failures)
                logger.warning("database unavailable, retrying in %.1fs: %s", pause, e,
                               extra={"action": "db_error", "runner": self.id})
                self._stop.wait(pause)
                for lane in self._lanes:  # after a restart, drop the pool's dead connections
                    lane.pool.check()
                continue
            except Exception:  # log and go on: a worker loop never dies
                logger.exception("worker loop failed", extra={"action": "work_loop_error"})
                self._stop.wait(self.poll_interval)
                continue
            if ran:
                continue
            if drain and looked_everywhere:
                return
            self._wakeup.wait(idle_for)

    def _cycle(self, held: dict[int, Conn]) -> tuple[bool, float, bool]:
        """Claim and run what is due for each saga.

        Return whether anything ran, how long to idle, and whether every database was
        looked at (a drain may only end when it was, and nothing was due).
        """
        ran, looked_everywhere = False, True
        idle_for = self.poll_interval
        failure: Exception | None = None
        for lane in self._lanes:
            if lane.heartbeat.expired:  # fenced: what we claimed would be taken back
                looked_everywhere, idle_for = False, min(idle_for, self.heartbeat_interval)
                continue
            if time.monotonic() < lane.retry_at:
                looked_everywhere = False
                idle_for = min(idle_for, max(0.0, lane.retry_at - time.monotonic()))
                continue
            try:
                lane_ran, lane_idle = self._lane_cycle(lane, held)
            except PoolClosed:
                raise
            except (psycopg.OperationalError, PoolTimeout) as e:
                # One database down must not stall the others: skip it for a while.
                lane.failures += 1
                lane.retry_at = time.monotonic() + self._retry_pause(lane.failures)
                failure, looked_everywhere = e, False
                continue
            lane.failures = 0
            ran, idle_for = ran or lane_ran, min(idle_for, lane_idle)
        if failure is not None and not ran:
            raise failure
        return ran, idle_for, looked_everywhere

    def _lane_cycle(self, lane: Lane, held: dict[int, Conn]) -> tuple[bool, float]:
        ran = False
        idle_for = self.poll_interval
        conn = self._connection(lane, held)
        if self._run_buffered(lane, conn):
            return True, idle_for
        for saga in lane.sagas:
            if self._stop.is_set():
                return ran, 0.0
            steps = list(saga.steps)
            # The claim commits on its own (autocommit); the rows are in flight a moment
            # later. release_stale spares rows claimed in the last STALE_AGE seconds, so
            # it never hands back a row between the two. If the claim fails after its
            # commit landed, release_stale returns the rows once that age has passed.
            rows = lane.store.claim(conn, self.id, saga.name, steps, self.claim_batch)
            self._hold(r.id for r in rows)
            if rows:
                logger.debug("claimed %d instance(s) of %s", len(rows), saga.name,
                             extra={"action": "claim", "runner": self.id})
                # The rest of a batch is for whichever thread is free first (this one
                # too, once done); a full batch means there may be more: wake one more.
                lane.buffer(saga, rows[1:])
                woken = len(rows) - 1 + (len(rows) == self.claim_batch)
                if woken:
                    self._wakeup.notify(woken)
                self._run_claimed(lane, saga, conn, rows[0])
                ran = True
            elif not ran:
                due_in = lane.store.next_due(conn, saga.name, steps)
                if due_in is not None:
                    # Due yet not claimed means locked by someone else (a caller's
                    # open transaction): look again later, without spinning.
                    idle_for = min(idle_for, due_in if due_in > 0 else IDLE_RECHECK)
        return ran, idle_for

    def _run_buffered(self, lane: Lane, conn: Conn) -> bool:
        """Run one row another thread claimed in a batch, if any; False if none."""
        while (item := lane.next_claimed()) is not None:
            claimed_at, saga, row = item
            if time.monotonic() - claimed_at < self.heartbeat_timeout / 2:
                self._run_claimed(lane, saga, conn, row)
                return True
            # Waited too long (every thread busy, or fenced): its lease may have lapsed,
            # and running it might run a step another runner runs too. Hand it back;
            # the lease guard makes that a no-op if it is someone else's by now.
            try:
                lane.store.release(conn, self.id, [row.id])
            finally:
                self._let_go([row.id])
        return False

    @staticmethod
    def _connection(lane: Lane, held: dict[int, Conn]) -> Conn:
        """The connection this worker thread holds for *lane*; a new one if it broke."""
        conn = held.get(id(lane))
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                del held[id(lane)]
                give_back(lane.pool, conn)
            conn = held[id(lane)] = borrow(lane.pool, timeout=LANE_TIMEOUT)
        return conn

    def _hold(self, ids: Iterable[int]) -> None:
        with self._in_flight_lock:
            self._in_flight.update(ids)

    def _held(self) -> list[int]:
        with self._in_flight_lock:
            return list(self._in_flight)

    def _let_go(self, ids: Iterable[int]) -> None:
        with self._in_flight_lock:
            self._in_flight.difference_update(ids)

    def _run_claimed(self, lane: Lane, saga: Saga, conn: Conn, row: Claimed) -> None:
        try:
            if self._stop.is_set():
                lane.store.release(conn, self.id, [row.id])  # claimed, never started
                return
            Execution(saga, lane.store, lane.pool, conn, row, self.id, self._stop,
                      self.stats, patience=self.heartbeat_timeout).run()
        finally:
            self._let_go([row.id])

    # -- NOTIFY -------------------------------------------------------------------------

    def _listen_loop(self, lane: Lane) -> None:
        names = {s.name for s in lane.sagas}
        failures = 0
        while not self._done.is_set():
            try:
                with lane.connect() as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(lane.store.channel)))
                    failures = 0
                    self._wakeup.notify(self.workers)  # whatever was sent while we were away
                    while not self._done.is_set():
                        for note in conn.notifies(timeout=LISTEN_TICK):
                            if note.payload in names:
                                self._wakeup.notify()
            except psycopg.Error as e:
                failures += 1
                pause = self._retry_pause(failures)
                logger.warning("listener lost its connection, reconnecting in %.1fs: %s",
                               pause, e, extra={"action": "listen_error", "runner": self.id})
                self._done.wait(pause)
