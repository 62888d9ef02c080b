"""`Saga.wait()`'s loop: LISTEN for instances that finish, re-reading the row on each
notification that names it (and every few seconds, in case one is missed). In pooler
mode, where LISTEN does not deliver, it polls the row with a backoff instead."""

from __future__ import annotations

import time
from typing import Any, Final

from psycopg import sql
from psycopg_pool import ConnectionPool

from .errors import SagaNotFound
from .pooling import next_wait_pause
from .pools import autocommit
from .records import Status
from .store import Conn, Store

RECHECK: Final = 5.0  # seconds between re-reads of the row without a notification


def wait_until_done(pool: ConnectionPool[Any], store: Store, name: str, instance: str,
                    deadline: float | None, *, listen: bool = True) -> None:
    """Block until the instance is finished; `TimeoutError` at *deadline* (monotonic),
    `SagaNotFound` if there is no such instance. Without *listen*, poll."""
    if not listen:
        _poll(pool, store, name, instance, deadline)
        return
    with pool.connection() as conn:
        # LISTEN is committed before the first read: a finish after that read is sure
        # to be notified.
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(store.done_channel)))
        conn.commit()
        try:
            _wait_on(conn, store, name, instance, deadline)
        finally:
            if not conn.broken:  # the pool gets the connection back not listening
                conn.rollback()
                conn.execute("UNLISTEN *")
                conn.commit()


def _poll(pool: ConnectionPool[Any], store: Store, name: str, instance: str,
          deadline: float | None) -> None:
    """Re-read the row until it is finished, each read on a connection borrowed for it:
    a waiter holds no pooled connection (nor a pooler's server connection) while idle."""
    pause: float | None = None
    while True:
        with autocommit(pool) as conn:
            found = store.done_status(conn, name, instance)
        if found is None:
            raise SagaNotFound(f"saga {name!r} has no instance {instance!r}")
        if Status(found[1]).finished:
            return
        pause = next_wait_pause(pause)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"instance {instance!r} of saga {name!r} is still {Status(found[1]).name}")
            pause = min(pause, left)
        time.sleep(pause)  # the caller's own thread, blocked by design: nothing to wake it


def _wait_on(conn: Conn, store: Store, name: str, instance: str,
             deadline: float | None) -> None:
    while True:
        found = store.done_status(conn, name, instance)
        conn.commit()
        if found is None:
            raise SagaNotFound(f"saga {name!r} has no instance {instance!r}")
        row_id, status = found
        if Status(status).finished:
            return
        pause = RECHECK
        if deadline is not None:
            pause = min(pause, deadline - time.monotonic())
            if pause <= 0:
                raise TimeoutError(
                    f"instance {instance!r} of saga {name!r} is still {Status(status).name}")
        for note in conn.notifies(timeout=pause):
            if note.payload == str(row_id):
                break
