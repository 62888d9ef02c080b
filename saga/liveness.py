"""A runner's life in the database: its row, its heartbeat, and its duties to others —
reaping runners that went silent, and handing back its own rows that no thread works on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from .store import Conn

if TYPE_CHECKING:
    from .runner import Lane

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL: Final = 1.0
HEARTBEAT_TIMEOUT: Final = 15.0  # a runner silent this long is dead: its rows are recovered
STALE_AGE: Final = 2.0  # own RUNNING rows no thread works on, older than this, go back


class Heartbeat:
    """Keep runner *runner_id* alive in each lane's schema, and reap for the others.

    *held* tells which row ids the runner's threads are working on.
    """

    def __init__(self, runner_id: str, timeout: float, interval: float,
                 held: Callable[[], list[int]]) -> None:
        self.runner_id = runner_id
        self.timeout = timeout
        self.interval = interval
        self._held = held
        self._last = time.monotonic()  # the last beat that reached every lane
        self._steady_since: float | None = None  # start of the current run of good beats

    def __repr__(self) -> str:
        return f"<Heartbeat {self.runner_id!r} timeout={self.timeout:g}s>"

    @property
    def expired(self) -> bool:
        """True when beats have failed for half the timeout: others may soon reap us, so
        whatever we claimed now would be taken back and run twice."""
        return time.monotonic() - self._last > self.timeout / 2

    def beaten(self) -> None:
        """Note a beat that reached every lane."""
        self._last = time.monotonic()

    def register(self, lane: Lane, conn: Conn) -> None:
        lane.store.register_runner(conn, self.runner_id, socket.gethostname(), os.getpid(),
                                   lane.serves, self.timeout)

    def loop(self, lanes: Sequence[Lane], done: threading.Event) -> None:
        """Beat every `interval` on a dedicated connection per lane, until *done*."""
        conns: dict[int, Conn] = {}
        try:
            while not done.wait(self.interval):
                healthy = True
                for i, lane in enumerate(lanes):
                    try:
                        if i not in conns or conns[i].closed:
                            conns[i] = lane.connect(statement_timeout=self.timeout / 2)
                        self.beat(lane, conns[i])
                    except Exception as e:  # never die: a silent runner gets reaped
                        healthy, self._steady_since = False, None
                        logger.warning("heartbeat failed: %s", e, extra={
                            "action": "heartbeat_error", "runner_id": self.runner_id})
                        failed = conns.pop(i, None)
                        if failed is not None:
                            failed.close()
                if healthy:
                    self.beaten()
        finally:
            for c in conns.values():
                c.close()

    def beat(self, lane: Lane, conn: Conn, *, reap: bool | None = None) -> None:
        """Heartbeat, reap dead runners, recover orphaned rows, release our own stale ones.

        Reaping runners waits (unless *reap* says) until we have beaten steadily for a
        whole timeout: after an outage every runner's expiry has passed, and the first
        one back must not take the others' work while they reconnect. Rows whose runner
        row is gone are always fair game.
        """
        store, me = lane.store, self.runner_id
        if not store.heartbeat(conn, me, self.timeout):
            # Reaped while alive (a long pause or outage): our rows went back to PENDING,
            # and our leases no longer hold. Come back as the same runner.
            logger.warning("runner %s was reaped as dead; registering again", me,
                           extra={"action": "runner_reregister", "runner_id": me})
            self.register(lane, conn)
        now = time.monotonic()
        if self._steady_since is None:
            self._steady_since = now
        if reap is None:
            reap = now - self._steady_since >= self.timeout
        dead, recovered = store.reap(conn, runners=reap)
        if dead or recovered:
            logger.warning("reaped %d silent runner(s) %s; %d instance(s) back to PENDING",
                           len(dead), dead, recovered, extra={"action": "reap", "runner_id": me})
        released = store.release_stale(conn, me, self._held(),
                                       max(STALE_AGE, 2 * self.interval))
        if released:
            logger.warning("%d instance(s) whose outcome was not recorded back to PENDING",
                           released, extra={"action": "release_stale", "runner_id": me})
