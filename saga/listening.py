"""A runner's listener: LISTEN on one lane's channel and turn NOTIFY into wake-ups, on
the lane's database or on a direct `listen_dsn` that bypasses a pooler.

At its first connection it checks itself: it sends a NOTIFY the way `start` does and
waits briefly for it. Through a transaction-pooling pooler the LISTEN stays behind on a
server connection that is not ours by the time anything is notified, so nothing arrives;
then it warns once, saying why and what to do, and the runner polls instead.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .lane import Wakeup
from .pools import DEDICATED_DEFAULTS, dedicated
from .store import Conn

if TYPE_CHECKING:
    from .lane import Lane

logger = logging.getLogger(__name__)

LISTEN_TICK: Final = 0.25  # how often the listener looks up from NOTIFY to check for stop
SELF_CHECK_TIMEOUT: Final = 2.0  # how long the start-up self-check waits for its NOTIFY


class Listener:
    """LISTEN for *lane* until *done*; wake *wakeup* for each NOTIFY about its sagas.

    *dsn* (a direct connection string) replaces the lane's own database for LISTEN only.
    *on_deaf* is called once if the self-check's NOTIFY never arrives, and returns the
    poll interval the runner falls back to; the listener then ends. *pause* gives the
    jittered wait after *n* consecutive failures.
    """

    def __init__(self, runner_id: str, lane: Lane, wakeup: Wakeup, workers: int,
                 done: threading.Event, *, dsn: str | None, on_deaf: Callable[[], float],
                 pause: Callable[[int], float], self_check: bool = True) -> None:
        self.runner_id = runner_id
        self.lane = lane
        self.dsn = dsn
        self._wakeup = wakeup
        self._workers = workers
        self._done = done
        self._on_deaf = on_deaf
        self._pause = pause
        self._checked = not self_check
        self._names = {s.name for s in lane.specs}
        self._token = f"pgsaga-self-check:{runner_id}"  # no saga is named so: others ignore it

    def __repr__(self) -> str:
        return f"<Listener {self.lane.store.channel!r} runner={self.runner_id!r}>"

    def connect(self) -> Conn:
        """A dedicated autocommit connection to LISTEN on."""
        if self.dsn is None:
            return dedicated(self.lane.pool)
        given = conninfo_to_dict(self.dsn)
        defaults: dict[str, Any] = {
            k: v for k, v in DEDICATED_DEFAULTS.items() if k not in given}
        return psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None, **defaults)

    def loop(self) -> None:
        """Listen, reconnecting after failures, until done (or found deaf)."""
        failures = 0
        while not self._done.is_set():
            try:
                with self.connect() as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(
                        sql.Identifier(self.lane.store.channel)))
                    failures = 0
                    if not self._checked:
                        heard = self._hears_itself(conn)
                        self._checked = True
                        if not heard:
                            self._give_up(conn)
                            return
                    self._wakeup.notify(self._workers)  # whatever was sent while away
                    while not self._done.is_set():
                        self._relay(conn, LISTEN_TICK)
            except psycopg.Error as e:
                failures += 1
                pause = self._pause(failures)
                logger.warning("listener lost its connection, reconnecting in %.1fs: %s",
                               pause, e, extra={"action": "listen_error",
                                                "runner": self.runner_id})
                self._done.wait(pause)

    def _relay(self, conn: Conn, timeout: float) -> bool:
        """Wake workers for the notifications of *timeout* seconds; True if the
        self-check's own came among them."""
        heard = False
        for note in conn.notifies(timeout=timeout):
            if note.payload in self._names:
                self._wakeup.notify()
            elif note.payload == self._token:
                heard = True
        return heard

    def _hears_itself(self, conn: Conn) -> bool:
        """Send a NOTIFY to the lane's database as `start` does (through its pool's DSN,
        so through the pooler if there is one) and wait for it here.

        From another connection, not this one: a session hears its own NOTIFY at its
        COMMIT, which a pooler hands back to whoever sent it even when the LISTEN is lost.
        A connection of its own, not a pooled one: the pool would take it back as just
        used, and skip the check when it next hands it out.
        """
        with dedicated(self.lane.pool) as sender:
            sender.execute("SELECT pg_notify(%s, %s)", (self.lane.store.channel, self._token))
        deadline = time.monotonic() + SELF_CHECK_TIMEOUT
        while (left := deadline - time.monotonic()) > 0 and not self._done.is_set():
            if self._relay(conn, min(left, LISTEN_TICK)):
                logger.debug("listener self-check passed", extra={
                    "action": "listen_check", "runner": self.runner_id})
                return True
        return self._done.is_set()  # stopping: no verdict, no warning

    def _give_up(self, conn: Conn) -> None:
        # The LISTEN may sit on a pooled server connection: take it back where we can.
        with contextlib.suppress(psycopg.Error):
            conn.execute("UNLISTEN *")
        interval = self._on_deaf()
        where = "--listen-dsn" if self.dsn is not None else "the database"
        logger.warning(
            "LISTEN does not deliver: a NOTIFY sent on the saga's DSN did not arrive "
            "within %.0fs on %s (a pooler in transaction mode, such as PgBouncer, in the "
            "way, or a --listen-dsn to another database). Polling every %.2gs instead. "
            "Fix: give the worker --listen-dsn with a direct connection to the same "
            "database, or run it with --pooler (or --no-listen) to poll without the check.",
            SELF_CHECK_TIMEOUT, where, interval,
            extra={"action": "listen_deaf", "runner": self.runner_id})
