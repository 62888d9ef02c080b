"""A runner's life in one database: its row, its heartbeat, and its duties to others —
reaping runners that went silent, and handing back its own rows that no thread works on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from psycopg import sql
from psycopg_pool import ConnectionPool

from .pools import dedicated
from .store import Conn, Store

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL: Final = 1.0
HEARTBEAT_TIMEOUT: Final = 15.0  # a runner silent this long is dead: its rows are recovered
STALE_AGE: Final = 2.0  # own RUNNING rows no thread works on, older than this, go back


class Heartbeat:
    """Keep runner *runner_id* alive in *store*'s schema, and reap there for the others.

    One per lane, each on its own thread and connection (to *pool*'s database, outside
    the pool): a database that hangs must not silence the runner in the others. *serves*
    maps saga names to their steps, for the runner row; *held* tells which row ids the
    runner's threads are working on. *pooler*: the pool's DSN leads through a
    transaction-pooling pooler, so the statement timeout is set per beat (`SET LOCAL`).
    """

    def __init__(self, runner_id: str, store: Store, pool: ConnectionPool[Any],
                 serves: Mapping[str, Sequence[str]], timeout: float, interval: float,
                 held: Callable[[], list[int]],
                 limits: Mapping[str, str] | None = None, *, pooler: bool = False) -> None:
        self.runner_id = runner_id
        self.pooler = pooler
        self.store = store
        self.pool = pool
        self.serves = {name: sorted(steps) for name, steps in serves.items()}
        # The limits of the sagas that have some (SagaSpec.limits_json), published in
        # the runner row for `stats`.
        self.limits = dict(limits or {})
        self.timeout = timeout
        self.interval = interval
        self._held = held
        # Others reap us once `timeout` has passed since our last beat *began* (that is
        # when its statement_timestamp() was taken): stop claiming well before.
        self._fence_after = max(timeout / 2, timeout - 2 * interval)
        self._statement_timeout = max(timeout / 2, timeout - interval)
        self._last = time.monotonic()  # when the last successful beat began
        self._steady_since: float | None = None  # start of the current run of good beats

    def __repr__(self) -> str:
        return f"<Heartbeat {self.runner_id!r} schema={self.store.schema!r}>"

    @property
    def expired(self) -> bool:
        """True when beats have failed for too long: others may soon reap us here, so
        whatever we claimed now would be taken back and run twice."""
        return time.monotonic() - self._last > self._fence_after

    def register(self, conn: Conn) -> None:
        began = time.monotonic()
        self.store.register_runner(conn, self.runner_id, socket.gethostname(),
                                   os.getpid(), self.serves, self.timeout, self.limits)
        self._last = began

    def loop(self, done: threading.Event) -> None:
        """Beat every `interval` on a dedicated connection, until *done*."""
        conn: Conn | None = None
        try:
            while not done.wait(self.interval):
                try:
                    if conn is None or conn.closed:
                        # In pooler mode a session SET would stay on a server connection
                        # that other clients get next: _bounded_beat sets it per beat.
                        conn = dedicated(self.pool, statement_timeout=None if self.pooler
                                         else self._statement_timeout)
                    self._bounded_beat(conn)
                except Exception as e:  # never die: a silent runner gets reaped
                    self._steady_since = None
                    logger.warning("heartbeat failed: %s", e, extra={
                        "action": "heartbeat_error", "runner": self.runner_id})
                    if conn is not None:
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def _bounded_beat(self, conn: Conn) -> None:
        """`beat` under the statement timeout: the connection's own, or in pooler mode a
        SET LOCAL in one transaction with the beat (a session SET would be left on a
        server connection for other clients, and the next beat may run on another)."""
        if not self.pooler:
            self.beat(conn)
            return
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                sql.Literal(max(1, int(self._statement_timeout * 1000)))))
            self.beat(conn)

    def beat(self, conn: Conn, *, reap: bool | None = None, margin: float = 0.0) -> None:
        """Heartbeat, reap dead runners, recover orphaned rows, release our own stale ones.

        Reaping runners waits (unless *reap* says) until we have beaten steadily for a
        whole timeout: after an outage every runner's expiry has passed, and the first
        one back must not take the others' work while they reconnect. *margin* spares
        runners that expired less than that many seconds ago. Rows whose runner row is
        gone are always fair game.
        """
        store, me = self.store, self.runner_id
        began = time.monotonic()
        if not store.heartbeat(conn, me, self.timeout):
            # Reaped while alive (a long pause or outage): our rows went back to PENDING,
            # and our leases no longer hold. Come back as the same runner.
            logger.warning("runner %s was reaped as dead; registering again", me,
                           extra={"action": "runner_reregister", "runner": me})
            self.register(conn)
        self._last = began
        if self._steady_since is None:
            self._steady_since = began
        if reap is None:
            reap = began - self._steady_since >= self.timeout
        dead, recovered = store.reap_report(conn, runners=reap, margin=margin)
        if dead:
            logger.warning("runner(s) %s fell silent for longer than their heartbeat timeout: "
                           "counted as dead", ", ".join(dead),
                           extra={"action": "reap", "runner": me})
        if recovered:
            logger.warning("%d instance(s) whose runner stopped during a step are PENDING "
                           "again: %s", len(recovered), _names(recovered),
                           extra={"action": "reap", "runner": me})
        released = store.release_stale(conn, me, self._held(),
                                       max(STALE_AGE, 2 * self.interval))
        if released:
            logger.warning("%d instance(s) whose outcome was not recorded back to PENDING",
                           released, extra={"action": "release_stale", "runner": me})


def _names(instances: Sequence[tuple[str, str]], most: int = 10) -> str:
    """`saga/instance` of the first *most* instances, and how many more there are."""
    shown = ", ".join(f"{saga}/{instance}" for saga, instance in instances[:most])
    more = len(instances) - most
    return f"{shown} and {more} more" if more > 0 else shown
