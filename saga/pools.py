"""`Database`: where a saga's connections come from — a pool it opens from a DSN (or
SAGA_DSN) on first use, or a pool the application passes in and keeps owning."""

from __future__ import annotations

import os
import threading
from typing import Any, Final

from psycopg_pool import ConnectionPool

from .conninfo import check_dsn

POOL_SIZE: Final = 4  # connections of a saga's own pool when it does not run workers


class Database:
    """The connection pool of one saga, opened lazily and resized for a worker."""

    def __init__(self, owner: str, dsn: str | None, pool: ConnectionPool[Any] | None) -> None:
        if dsn is not None and pool is not None:
            raise ValueError("pass either dsn or pool, not both")
        if dsn is not None and not isinstance(dsn, str):
            raise TypeError(f"dsn must be a string, got {type(dsn).__name__}")
        if dsn is not None:
            check_dsn(dsn)
        if pool is not None and not isinstance(pool, ConnectionPool):
            raise TypeError(f"pool must be a psycopg_pool.ConnectionPool, got {pool!r}")
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
        dsn = self.dsn = self.identity()  # SAGA_DSN, read now, is the DSN from now on
        # check: a connection that died while idle in the pool (a database restart, a
        # cut) is replaced when taken, instead of failing the caller's first query.
        pool: ConnectionPool[Any] = ConnectionPool(
            dsn, min_size=1, max_size=size, open=False, name=f"saga-{self.owner}",
            check=ConnectionPool.check_connection,
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

    def close(self) -> None:
        """Close our own pool (a pool passed in is its owner's to close)."""
        with self._lock:
            if self._pool is not None and self._owns_pool:
                self._pool.close()
                self._pool = None
