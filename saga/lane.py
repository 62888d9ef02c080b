"""What a runner's threads share: a lane (the sagas of one database and schema) and the
wake-up that idle workers sleep on."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from .store import Claimed, Conn, Store

if TYPE_CHECKING:
    from .core import Saga
    from .liveness import Heartbeat

# For the heartbeat and LISTEN connections, unless the DSN says otherwise.
DEDICATED_DEFAULTS: Final = {
    "connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10,
    "keepalives_interval": 5, "keepalives_count": 3,
}


class Wakeup:
    """Wake idle workers one at a time: a capped count of pending wake-ups.

    A wake-up that arrives while every worker is busy is kept (up to the number of
    workers), so a worker that was about to sleep looks again instead.
    """

    def __init__(self, cap: int) -> None:
        self._cond = threading.Condition()
        self._pending = 0
        self._cap = cap

    def notify(self, n: int = 1) -> None:
        with self._cond:
            self._pending = min(self._cap, self._pending + n)
            self._cond.notify(n)

    def wait(self, timeout: float) -> None:
        with self._cond:
            if self._pending == 0:
                self._cond.wait(timeout)
            if self._pending > 0:
                self._pending -= 1


@dataclass
class Lane:
    """The sagas that share one database and schema: one pool, one store, one runner row."""

    pool: ConnectionPool[Any]
    store: Store
    sagas: list[Saga]
    pooler: bool = False  # behind a transaction pooler: no session state (saga.pooling)
    failures: int = 0  # consecutive failed cycles on this database
    retry_at: float = 0.0  # monotonic time before which workers skip this lane
    heartbeat: Heartbeat = field(init=False)
    # Rows claimed in a batch and not started yet: whichever worker thread is free next
    # takes one, so a batch never waits behind one thread's slow step while others idle.
    claimed: deque[tuple[float, Saga, Claimed]] = field(default_factory=deque)

    def buffer(self, saga: Saga, rows: list[Claimed]) -> None:
        now = time.monotonic()
        self.claimed.extend((now, saga, row) for row in rows)

    def next_claimed(self) -> tuple[float, Saga, Claimed] | None:
        """The oldest buffered row, with when it was claimed (monotonic), or None."""
        try:
            return self.claimed.popleft()  # atomic: no lock needed
        except IndexError:
            return None

    def unclaim_all(self) -> list[Claimed]:
        """Empty the buffer (at a stop): the rows to hand back."""
        rows = []
        while (item := self.next_claimed()) is not None:
            rows.append(item[2])
        return rows

    @property
    def serves(self) -> dict[str, list[str]]:
        return {s.name: sorted(s.steps) for s in self.sagas}

    def connect(self, statement_timeout: float | None = None) -> Conn:
        """A dedicated autocommit connection (heartbeat, LISTEN), outside the pool.

        It fails rather than hangs: a connect timeout, TCP keepalives (where the DSN sets
        none), and optionally a statement timeout (not in pooler mode, where a SET would
        stay on a server connection that other clients get next: see `Heartbeat`).
        """
        conninfo, kwargs = self.pool.conninfo, self.pool.kwargs
        conninfo = conninfo() if callable(conninfo) else conninfo
        kwargs = (kwargs() if callable(kwargs) else kwargs) or {}
        kwargs = {k: v for k, v in kwargs.items() if k not in ("autocommit", "row_factory")}
        given = conninfo_to_dict(conninfo)
        for key, value in DEDICATED_DEFAULTS.items():
            if key not in given and key not in kwargs:
                kwargs[key] = value
        conn = psycopg.connect(conninfo, autocommit=True, **kwargs)
        if statement_timeout is not None and not self.pooler:
            conn.execute(sql.SQL("SET statement_timeout = {}").format(
                sql.Literal(max(1, int(statement_timeout * 1000)))))
        return conn
