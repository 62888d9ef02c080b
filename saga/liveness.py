"""A runner's life in one database: its row, its heartbeat, and its duties to others —
reaping runners that went silent, and handing back its own rows that no thread works on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from psycopg import sql

from .store import Conn

if TYPE_CHECKING:
    from .lane import Lane

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL: Final = 1.0
HEARTBEAT_TIMEOUT: Final = 15.0  # a runner silent this long is dead: its rows are recovered
STALE_AGE: Final = 2.0  # own RUNNING rows no thread works on, older than this, go back


class Heartbeat:
    """Keep runner *runner_id* alive in *lane*'s schema, and reap there for the others.

    One per lane, each on its own thread and connection: a database that hangs must not
    silence the runner in the others. *held* tells which row ids the runner's threads
    are working on.
    """

    def __init__(self, runner_id: str, lane: Lane, timeout: float, interval: float,
                 held: Callable[[], list[int]]) -> None:
        self.runner_id = runner_id
        self.lane = lane
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
        return f"<Heartbeat {self.runner_id!r} schema={self.lane.store.schema!r}>"

    @property
    def expired(self) -> bool:
        """True when beats have failed for too long: others may soon reap us here, so
        whatever we claimed now would be taken back and run twice."""
        return time.monotonic() - self._last > self._fence_after

    def register(self, conn: Conn) -> None:
        began = time.monotonic()
        self.lane.store.register_runner(conn, self.runner_id, socket.gethostname(),
                                        os.getpid(), self.lane.serves, self.timeout)
        self._last = began

    def loop(self, done: threading.Event) -> None:
        """Beat every `interval` on a dedicated connection, until *done*."""
        conn: Conn | None = None
        try:
            while not done.wait(self.interval):
                try:
                    if conn is None or conn.closed:
                        conn = self.lane.connect(statement_timeout=self._statement_timeout)
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
        if not self.lane.pooler:
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
        store, me = self.lane.store, self.runner_id
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
        dead, recovered = store.reap(conn, runners=reap, margin=margin)
        if dead or recovered:
            logger.warning("reaped %d silent runner(s) %s; %d instance(s) back to PENDING",
                           len(dead), dead, recovered, extra={"action": "reap", "runner": me})
        released = store.release_stale(conn, me, self._held(),
                                       max(STALE_AGE, 2 * self.interval))
        if released:
            logger.warning("%d instance(s) whose outcome was not recorded back to PENDING",
                           released, extra={"action": "release_stale", "runner": me})
