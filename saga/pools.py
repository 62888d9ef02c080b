"""Where a saga's connections come from, and the one way saga takes them.

`Database`: a pool the saga opens from a DSN (or SAGA_DSN) on first use, or a pool the
application passes in and keeps owning. `borrow`/`give_back`/`autocommit`: a pooled
connection in autocommit mode. `Lent`: the connection a worker thread keeps, replaced
when it breaks. `dedicated`: a connection outside the pool (heartbeat, LISTEN).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from .conninfo import check_connection, check_dsn, describe
from .errors import DatabaseUnavailable

Conn = psycopg.Connection[Any]

POOL_SIZE: Final = 4  # connections of a saga's own pool when it does not run workers
FRESH: Final = 1.0  # seconds after its last use during which a connection is not checked
CONNECT_TIMEOUT: Final = 5.0  # seconds an API call waits for a connection, then fails
# For dedicated connections (heartbeat, LISTEN), unless the DSN says otherwise.
DEDICATED_DEFAULTS: Final = {
    "connect_timeout": 10, "keepalives": 1, "keepalives_idle": 10,
    "keepalives_interval": 5, "keepalives_count": 3,
}


class Database:
    """The connection pool of one saga, opened lazily and resized for a worker."""

    def __init__(self, owner: str, dsn: str | None, pool: ConnectionPool[Any] | None, *,
                 timeout: float = CONNECT_TIMEOUT) -> None:
        if dsn is not None and pool is not None:
            raise ValueError("pass either dsn or pool, not both")
        if dsn is not None and not isinstance(dsn, str):
            raise TypeError(f"dsn must be a string, got {type(dsn).__name__}")
        if dsn is not None:
            check_dsn(dsn)
        if pool is not None and not isinstance(pool, ConnectionPool):
            raise TypeError(f"pool must be a psycopg_pool.ConnectionPool, got {pool!r}")
        if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                or not 0 < timeout < math.inf):
            raise ValueError(f"connect_timeout must be a number of seconds > 0, got {timeout!r}")
        self.timeout = float(timeout)
        self._errors_seen = 0  # the pool's count of failed connection attempts, last seen
        self.owner = owner  # the saga's name, for messages and the pool's name
        self.dsn = dsn
        self._pool = pool
        self._owns_pool = pool is None
        self._lock = threading.Lock()

    @property
    def has_pool(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = self._open(POOL_SIZE)
            return self._pool

    def identity(self) -> str:
        """What identifies the database: the DSN, or the given pool."""
        if not self._owns_pool:
            return f"<pool {id(self._pool):#x}>"
        if self.dsn is not None:
            return self.dsn
        dsn = os.environ.get("SAGA_DSN")
        if not dsn:
            raise ValueError(
                f"saga {self.owner!r} has no database: pass Saga(name, dsn) or pool=, "
                "or set SAGA_DSN"
            )
        return check_dsn(dsn, "SAGA_DSN")

    def _open(self, size: int) -> ConnectionPool[Any]:
        """Open our own pool, once one connection has shown the database answers.

        Without that probe a pool that cannot connect makes its first caller wait for
        the whole pool timeout, then raise a bare `PoolTimeout`, while it logs a failed
        attempt every second. The probe fails at once when the server refuses (after the
        timeout, rounded up to whole seconds and at least 2 by libpq, when it does not
        answer), with the reason; no pool is left behind, so the next call tries again.
        """
        dsn = self.dsn = self.identity()  # SAGA_DSN, read now, is the DSN from now on
        check_connection(dsn, self.timeout)  # DatabaseUnavailable, with libpq's reason
        pool: ConnectionPool[Any] = ConnectionPool(
            dsn, min_size=1, max_size=size, open=False, name=f"saga-{self.owner}",
            check=_check,
        )
        pool.open()
        return pool

    def use_dsn(self, dsn: str) -> None:
        """Point at another database; an own pool, if open, is closed (a given one is
        left to its owner)."""
        check_dsn(dsn)
        with self._lock:
            if self._pool is not None and self._owns_pool:
                self._pool.close()
            self.dsn, self._pool, self._owns_pool = dsn, None, True

    def ensure_pool_size(self, size: int) -> ConnectionPool[Any]:
        """Return the pool, grown to at least *size* connections if it is our own."""
        with self._lock:
            if self._pool is None:
                self._pool = self._open(max(size, POOL_SIZE))
            elif self._pool.max_size < size:
                if not self._owns_pool:
                    raise ValueError(
                        f"the pool of saga {self.owner!r} has max_size={self._pool.max_size}:"
                        f" the worker needs at least {size}"
                    )
                self._pool.resize(self._pool.min_size, size)
            return self._pool

    @contextmanager
    def autocommit(self) -> Iterator[Conn]:
        """A pooled connection in autocommit mode, for one call of the API.

        Wait at most `timeout` seconds for it, then raise `DatabaseUnavailable`, so that
        a web view answers (503) in seconds while the database is down, rather than after
        the pool's 30 s, or with a psycopg_pool exception.
        """
        pool = self.pool  # DatabaseUnavailable here if the first connection fails
        try:
            conn = borrow(pool, self.timeout)
        except PoolTimeout as e:
            raise DatabaseUnavailable(self._no_connection(pool)) from e
        try:
            yield conn
        finally:
            give_back(pool, conn)

    def _no_connection(self, pool: ConnectionPool[Any]) -> str:
        """Why no connection came within the timeout, as far as the pool can tell."""
        stats = pool.get_stats()
        info = pool.conninfo  # a string, or a function that makes one
        where = describe(info) if isinstance(info, str) else f"the database of pool {pool.name!r}"
        # The pool counts the connections it failed to make: new failures since the last
        # time we looked, or room left in the pool, mean the database is the problem.
        errors = stats.get("connections_errors", 0)
        failing, self._errors_seen = errors > self._errors_seen, errors
        if not failing and stats.get("pool_size", 0) >= pool.max_size:
            return (f"no free connection to {where} within {self.timeout:g}s: all "
                    f"{pool.max_size} connections of the pool stayed busy")
        return (f"cannot connect to {where} within {self.timeout:g}s (the database is down "
                "or unreachable; the pool keeps trying in the background)")

    def close(self) -> None:
        """Close our own pool (a pool passed in is its owner's to close)."""
        with self._lock:
            if self._pool is not None and self._owns_pool:
                self._pool.close()
                self._pool = None


# The autocommit mode each pool hands its connections out in, to give them back so.
_POOL_MODE: weakref.WeakKeyDictionary[ConnectionPool[Any], bool] = weakref.WeakKeyDictionary()


def borrow(pool: ConnectionPool[Any], timeout: float | None = None) -> Conn:
    """A pooled connection in autocommit mode.

    A single statement is then one round trip instead of three (BEGIN, the statement,
    COMMIT); several still share a transaction block through `conn.transaction()`.
    `give_back` returns it to the pool in the mode the pool hands connections out in.
    """
    conn: Conn = pool.getconn(timeout=timeout)
    try:
        _POOL_MODE.setdefault(pool, conn.autocommit)
        conn.autocommit = True
    except BaseException:
        pool.putconn(conn)
        raise
    return conn


def give_back(pool: ConnectionPool[Any], conn: Conn) -> None:
    """Return a connection from `borrow` to its pool as the pool made it."""
    idle = psycopg.pq.TransactionStatus.IDLE
    if not (conn.closed or conn.broken) and conn.info.transaction_status == idle:
        with contextlib.suppress(psycopg.Error):
            conn.autocommit = _POOL_MODE.get(pool, False)
    _RETURNED_AT[conn] = time.monotonic()
    pool.putconn(conn)  # the pool discards a broken connection and rolls back an open one


@contextmanager
def autocommit(pool: ConnectionPool[Any], timeout: float | None = None) -> Iterator[Conn]:
    """`borrow` and `give_back` as a context manager."""
    conn = borrow(pool, timeout)
    try:
        yield conn
    finally:
        give_back(pool, conn)


class Lent:
    """The pooled autocommit connection one thread keeps across many uses.

    `get()` hands out the same connection until it breaks (a restart, a cut), then
    gives the dead one back (the pool discards it) and borrows a fresh one. Only the
    thread that owns a `Lent` uses it: no lock.
    """

    def __init__(self, pool: ConnectionPool[Any], *,
                 on_borrow: Callable[[Conn], None] | None = None,
                 on_release: Callable[[Conn], None] | None = None) -> None:
        self.pool = pool
        self._conn: Conn | None = None
        self._on_borrow = on_borrow  # set a new connection up (session settings)
        self._on_release = on_release  # undo that before the pool gets it back

    def __repr__(self) -> str:
        return f"<Lent pool={self.pool.name!r} held={self._conn is not None}>"

    @property
    def broken(self) -> bool:
        """True if the connection held is unusable (closed or broken)."""
        return self._conn is not None and (self._conn.closed or self._conn.broken)

    def get(self, timeout: float | None = None) -> Conn:
        """The connection held, or a new one if there is none or it broke."""
        if self._conn is not None and not self.broken:
            return self._conn
        self.release()
        conn = borrow(self.pool, timeout)
        if self._on_borrow is not None:
            try:
                self._on_borrow(conn)
            except BaseException:
                give_back(self.pool, conn)
                raise
        self._conn = conn
        return conn

    def release(self) -> None:
        """Give the connection back to the pool, if one is held."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        idle = psycopg.pq.TransactionStatus.IDLE
        if (self._on_release is not None and not (conn.closed or conn.broken)
                and conn.info.transaction_status == idle):
            with contextlib.suppress(psycopg.Error):  # a failure: the pool resets or drops it
                self._on_release(conn)
        give_back(self.pool, conn)


def dedicated(pool: ConnectionPool[Any], statement_timeout: float | None = None) -> Conn:
    """A new autocommit connection to *pool*'s database, outside the pool.

    It fails rather than hangs: a connect timeout, TCP keepalives (where the DSN sets
    none), and optionally a statement timeout (seconds).
    """
    conninfo, kwargs = pool.conninfo, pool.kwargs
    conninfo = conninfo() if callable(conninfo) else conninfo
    kwargs = (kwargs() if callable(kwargs) else kwargs) or {}
    kwargs = {k: v for k, v in kwargs.items() if k not in ("autocommit", "row_factory")}
    given = conninfo_to_dict(conninfo)
    for key, value in DEDICATED_DEFAULTS.items():
        if key not in given and key not in kwargs:
            kwargs[key] = value
    conn = psycopg.connect(conninfo, autocommit=True, **kwargs)
    if statement_timeout is not None:
        conn.execute(sql.SQL("SET statement_timeout = {}").format(
            sql.Literal(max(1, int(statement_timeout * 1000)))))
    return conn


# When each connection was last given back through `give_back` (see `_check`). Not the
# pool's `reset` callback: with one, the pool takes connections back in a background
# task, so the next caller may find none ready.
_RETURNED_AT: weakref.WeakKeyDictionary[Conn, float] = weakref.WeakKeyDictionary()


def _check(conn: Conn) -> None:
    """Check a connection as the pool hands it out, unless it was in use a moment ago.

    A connection that died while idle in the pool (a database restart, a cut) is then
    replaced instead of failing the caller's first query. The check costs a round trip,
    which a busy application (an API call on every request) need not pay each time.
    """
    if time.monotonic() - _RETURNED_AT.get(conn, float("-inf")) > FRESH:
        ConnectionPool.check_connection(conn)
