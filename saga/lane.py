"""What a runner's threads share: the lanes (the sagas of one database and schema), the
wake-up idle workers sleep on, and the registry of instances in flight."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from psycopg_pool import ConnectionPool

from .liveness import Heartbeat
from .spec import SagaSpec
from .store import Claimed, Store


class Wakeup:
    """Wake idle worker threads: at most *n* per `notify(n)`, and never a busy one.

    Sleeping threads are woken one by one, the most recent sleeper first (its
    connection is the warmest). A thread takes a `token()` before it looks for work;
    `wait(timeout, token)` returns at once if, since then, a wake-up came that found no
    sleeper to take it (what the thread looked at may have missed what it was about).
    A wake-up that a sleeper took, or that came while every thread was busy, makes no
    one else look again: a busy thread claims as soon as its step ends, which is after
    the commit the wake-up announced.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = 0  # wake-ups that found too few sleepers
        self._sleepers: deque[threading.Event] = deque()

    def token(self) -> int:
        with self._lock:
            return self._seq

    @property
    def idle(self) -> int:
        """How many threads sleep now, not yet woken (an estimate once read)."""
        with self._lock:
            return len(self._sleepers)

    def notify(self, n: int = 1) -> None:
        with self._lock:
            woken = 0
            while woken < n and self._sleepers:
                self._sleepers.pop().set()
                woken += 1
            if woken < n:
                self._seq += 1

    def wait(self, timeout: float, token: int) -> None:
        with self._lock:
            if self._seq != token:
                return
            woken = threading.Event()
            self._sleepers.append(woken)
        if not woken.wait(timeout):
            # Gone already if a notify took it as the timeout passed: it looks anyway.
            with self._lock, contextlib.suppress(ValueError):
                self._sleepers.remove(woken)


class Running(NamedTuple):
    """What a worker thread is doing with a row it holds."""

    saga: str
    instance: str
    step: str | None  # None while claimed but not started


class InFlight:
    """The rows this runner's threads hold, in every lane, and what runs on them.

    `release_stale` must spare them; a stop names the ones still running. One registry
    for the whole runner, since two lanes can share a table (two pools onto one
    schema); ids of different tables only ever make it spare a row too many.
    """

    def __init__(self) -> None:
        self._rows: dict[int, Running] = {}
        self._lock = threading.Lock()  # worker threads and the heartbeat threads

    def hold(self, saga: str, rows: Iterable[Claimed]) -> None:
        with self._lock:
            for r in rows:
                self._rows[r.id] = Running(saga, r.instance, None)

    def running(self, row_id: int, step: str) -> None:
        with self._lock:
            held = self._rows.get(row_id)
            if held is not None:
                self._rows[row_id] = held._replace(step=step)

    def let_go(self, ids: Iterable[int]) -> None:
        with self._lock:
            for i in ids:
                self._rows.pop(i, None)

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._rows)

    def started(self) -> list[Running]:
        """The rows whose step is running now."""
        with self._lock:
            return [r for r in self._rows.values() if r.step is not None]


@dataclass(eq=False)
class Lane:
    """The sagas that share one database and schema: one pool, one store, one runner row
    (kept alive by `heartbeat`), and the rows claimed in a batch that no thread has
    started yet."""

    pool: ConnectionPool[Any]
    store: Store
    specs: list[SagaSpec]
    heartbeat: Heartbeat

    def __post_init__(self) -> None:
        # Rows claimed in a batch and not started yet: whichever worker thread is free
        # next takes one, so a batch never waits behind one thread's slow step while
        # others idle. deque's append and popleft are atomic: no lock.
        self._claimed: deque[tuple[float, SagaSpec, Claimed]] = deque()
        # Consecutive failures on this database and when to look again: written by
        # every worker thread, so under a lock.
        self._health = threading.Lock()
        self._failures = 0
        self._retry_at = 0.0

    def __repr__(self) -> str:
        return f"<Lane schema={self.store.schema!r} sagas={[s.name for s in self.specs]}>"

    # -- the database's health, as the worker threads see it ----------------------------

    def failed(self, pause: float) -> int:
        """Count a failed cycle; skip the lane for *pause* seconds. Return the count."""
        with self._health:
            self._failures += 1
            self._retry_at = time.monotonic() + pause
            return self._failures

    def succeeded(self) -> None:
        with self._health:
            self._failures = 0

    @property
    def failures(self) -> int:
        with self._health:
            return self._failures

    def wait_before_use(self) -> float:
        """Seconds until the lane may be tried again after failures (0: now)."""
        with self._health:
            return max(0.0, self._retry_at - time.monotonic())

    # -- rows claimed in a batch ---------------------------------------------------------

    def buffer(self, spec: SagaSpec, rows: list[Claimed]) -> None:
        now = time.monotonic()
        self._claimed.extend((now, spec, row) for row in rows)

    @property
    def has_buffered(self) -> bool:
        return bool(self._claimed)

    def next_claimed(self) -> tuple[float, SagaSpec, Claimed] | None:
        """The oldest buffered row, with when it was claimed (monotonic), or None."""
        try:
            return self._claimed.popleft()
        except IndexError:
            return None

    def unclaim_all(self) -> list[Claimed]:
        """Empty the buffer (at a stop): the rows to hand back."""
        rows = []
        while (item := self.next_claimed()) is not None:
            rows.append(item[2])
        return rows
