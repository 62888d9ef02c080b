"""`Runner`: one per worker process, and its life — threads, signals, stop and grace.

Worker threads each run a `saga.loop.WorkLoop`; per lane (database and schema), a
heartbeat thread keeps the runner alive and reaps dead ones, and a listener thread
turns NOTIFY into wake-ups (`saga.listening`), unless the runner only polls.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, Final, Protocol

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .conninfo import check_dsn
from .execution import RunStats
from .lane import Lane
from .listening import Listener
from .liveness import HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, Heartbeat
from .loop import Crew, WorkLoop
from .observe import Observers, StepObserver
from .pooling import POOLER_POLL_INTERVAL
from .schedules.ticker import Ticker
from .spec import SagaSpec
from .store import Store

__all__ = ["RunStats", "Runner", "Servable"]

logger = logging.getLogger(__name__)

POLL_INTERVAL: Final = 2.0  # idle workers look for due rows at least this often
# (POOLER_POLL_INTERVAL when a saga's workers get no NOTIFY: pooler mode, or no LISTEN)
GRACE: Final = 30.0  # how long a stop waits for in-flight steps
CLAIM_BATCH: Final = 1  # rows one claim takes


class Servable(Protocol):
    """What a runner needs of a saga (`saga.Saga` is one): its spec and its database."""

    def spec(self) -> SagaSpec: ...

    def database(self) -> str: ...

    def ensure_pool_size(self, size: int) -> ConnectionPool[Any]: ...


class Runner:
    """Run the steps of *sagas* on *workers* threads until stopped (or drained).

    *observers* are told about each step (see `saga.observe`). *listen* None LISTENs
    for wake-ups except for sagas in pooler mode; False only polls; True LISTENs even
    through a pooler (the self-check then warns and falls back to polling).
    *listen_dsn*, a direct connection to the same database, is used for LISTEN only, so
    that workers behind a pooler still wake within milliseconds.
    """

    def __init__(
        self,
        sagas: Sequence[Servable],
        *,
        workers: int = 8,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        poll_interval: float | None = None,
        grace: float = GRACE,
        claim_batch: int = CLAIM_BATCH,
        observers: Sequence[StepObserver] = (),
        listen: bool | None = None,
        listen_dsn: str | None = None,
    ) -> None:
        if not sagas:
            raise ValueError("a runner needs at least one saga")
        specs = [s.spec() for s in sagas]
        names = [f"{s.schema}.{s.name}" for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"saga names must be unique per schema in one runner, got {names}")
        for spec in specs:
            if not spec.steps:
                raise ValueError(f"saga {spec.name!r} has no steps")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if not heartbeat_timeout > 0:
            raise ValueError(f"heartbeat_timeout must be > 0, got {heartbeat_timeout!r}")
        if listen is not None and not isinstance(listen, bool):
            raise TypeError(f"listen must be None, True or False, got {listen!r}")
        if listen_dsn is not None:
            if listen is False:
                raise ValueError("listen_dsn is for LISTEN: it cannot go with listen=False")
            check_dsn(listen_dsn, "listen_dsn")
        self.listen, self.listen_dsn = listen, listen_dsn
        if poll_interval is None:
            deaf = any(not self._listens(s) for s in specs)
            poll_interval = POOLER_POLL_INTERVAL if deaf else POLL_INTERVAL
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
        self._specs = specs
        self._crew = Crew(self.id, [], workers, self.poll_interval, self.heartbeat_timeout,
                          self.heartbeat_interval, claim_batch,
                          observers=Observers(observers))
        self.stats = self._crew.stats
        self._stop = self._crew.stop
        self._abort = threading.Event()  # a second signal: stop waiting for anything
        # Signals received and not yet acted on. The handler only appends here: it runs
        # in the main thread between two bytecodes, maybe while that thread holds the
        # lock inside an Event or a Condition, so taking any lock there can deadlock.
        self._signalled: list[int] = []
        self._done = threading.Event()  # heartbeat and listener end
        self._tickers: list[Ticker] = []  # one per lane (saga.schedules)

    def __repr__(self) -> str:
        return f"<Runner {self.id!r} workers={self.workers}>"

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def _lanes(self) -> list[Lane]:
        return self._crew.lanes

    # -- lifecycle ----------------------------------------------------------------------

    def run(self, *, drain: bool = False) -> RunStats:
        """Run until `stop()` or a signal; with *drain*, until nothing is due. Block.

        SIGTERM/SIGINT handlers are installed when called from the main thread (and the
        old ones restored): the first signal stops gracefully, a second at once.
        """
        with self._signals():
            self._crew.lanes[:] = self._make_lanes()
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
            self._tickers = [Ticker(lane.pool, lane.store.schema,
                                    {s.name: list(s.schedules) for s in lane.specs})
                             for lane in self._lanes]
            if drain:
                for lane, ticker in zip(self._lanes, self._tickers, strict=True):
                    with lane.store.tables_required():
                        ticker.run_once()
            logger.info("runner %s started: %d worker(s) for %s%s", self.id, self.workers,
                        ", ".join(s.name for s in self._specs), " (drain)" if drain else "",
                        extra={"action": "runner_start", "runner": self.id})
            started = time.monotonic()
            service = self._start_services(drain)
            workers = [self._thread(f"saga-worker-{i}", WorkLoop(self._crew, drain=drain).run)
                       for i in range(self.workers)]
            try:
                while any(t.is_alive() for t in workers) and not self._stop.is_set():
                    self._stop.wait(0.2)
                    self._take_signals()
            finally:
                self._crew.halt()
                self._shut_down(workers, service)
            logger.info("runner %s stopped after %.1fs: %s", self.id, time.monotonic() - started,
                        self.stats.summary(), extra={"action": "runner_stop", "runner": self.id})
        return self.stats

    def _start_services(self, drain: bool) -> list[threading.Thread]:
        """Start the service threads of each lane: they run until `_done`, which is set
        after the worker threads have finished (or the grace period ran out).

        The heartbeat beats through the drain of in-flight steps on purpose: a runner
        that fell silent while finishing would have its rows taken and run twice.
        """
        service = [self._thread(f"saga-heartbeat-{i}", lane.heartbeat.loop, self._done)
                   for i, lane in enumerate(self._lanes)]
        if not drain:
            service += [self._thread(f"saga-listener-{i}", self._listener(lane).loop)
                        for i, lane in enumerate(self._lanes)
                        if self._listens(lane.specs[0])]
            service += [self._thread(f"saga-schedules-{i}", ticker.loop, self._stop)
                        for i, ticker in enumerate(self._tickers)]  # schedules
        return service

    def stop(self) -> None:
        """Stop claiming; `run()` then lets in-flight steps finish and returns. Idempotent."""
        self._crew.halt()

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
        if any(t.is_alive() for t in workers):
            running = self._crew.in_flight.started()
            logger.warning(
                "%d step(s) still running after the %.0fs grace period, left to finish or "
                "be recovered by another runner: %s", len(running), self.grace,
                ", ".join(f"{r.saga}/{r.instance} in step {r.step}" for r in running)
                or "none (the threads are writing outcomes)",
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
                self._crew.in_flight.let_go(ids)

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
        groups: dict[tuple[str, str], tuple[ConnectionPool[Any], list[SagaSpec]]] = {}
        for saga, spec in zip(self.sagas, self._specs, strict=True):
            key = (saga.database(), spec.schema)
            if key in groups:
                groups[key][1].append(spec)  # served through the first saga's pool
                continue
            # A worker thread holds one connection, and a `conn` step's set_state briefly
            # takes another; two spare ones keep that from waiting long.
            groups[key] = (saga.ensure_pool_size(self.workers + 2), [spec])
        lanes = []
        for (_, schema), (pool, specs) in groups.items():
            store = Store(schema)
            # The lane's connections come from its first saga's pool: its mode is theirs.
            pooler = specs[0].pooler
            heartbeat = Heartbeat(self.id, store, pool, {s.name: list(s.steps) for s in specs},
                                  self.heartbeat_timeout, self.heartbeat_interval,
                                  self._crew.in_flight.ids,
                                  limits={s.name: s.limits_json for s in specs
                                          if s.limits_json is not None}, pooler=pooler)
            lanes.append(Lane(pool, store, specs, heartbeat, pooler=pooler))
        return lanes

    def _thread(self, name: str, target: Callable[..., object],
                *args: object) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        return t

    # -- NOTIFY -------------------------------------------------------------------------

    def _listens(self, spec: SagaSpec) -> bool:
        """Whether the runner LISTENs for *spec*'s wake-ups (see the class docstring)."""
        if self.listen is not None:
            return self.listen
        return self.listen_dsn is not None or not spec.pooler

    def _listener(self, lane: Lane) -> Listener:
        return Listener(self.id, lane, self._crew.wakeup, self.workers, self._done,
                        dsn=self.listen_dsn, on_deaf=self._poll_instead,
                        pause=self._crew.retry_pause)

    def _poll_instead(self) -> float:
        """The listener hears nothing: poll often, not at an interval meant for NOTIFY."""
        self.poll_interval = min(self.poll_interval, POOLER_POLL_INTERVAL)
        self._crew.poll_interval = self.poll_interval  # read by every worker thread
        self._crew.wakeup.notify(self.workers)  # sleepers take up the new interval now
        return self.poll_interval
