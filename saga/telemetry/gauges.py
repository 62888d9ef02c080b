"""Gauges read from the database when metrics are scraped: the due backlog and the age
of the oldest due row of each saga's steps, and the live runners of each schema.

The queries (`sql/telemetry.sql`) are bounded and index-backed, so a scrape costs the
same whatever the backlog. Each database and schema is read on a connection of its own,
outside the saga's pool (a scrape never waits for a worker thread's connection), opened
at the first scrape and replaced after a failure.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from ..core import Saga
from ..pools import dedicated
from ..sqlfiles import named_queries, render

logger = logging.getLogger(__name__)

BACKLOG_CAP: Final = 100_000  # due rows counted per step at most: the gauge saturates there
STATEMENT_TIMEOUT: Final = 5.0  # seconds a scrape's query may take


@dataclass(frozen=True, slots=True)
class StepBacklog:
    """The due PENDING rows of one step (at most the cap), and how long the earliest
    has been due, in seconds (0 when none is due)."""

    saga: str
    step: str
    due: int
    oldest_due_age: float


@dataclass(frozen=True, slots=True)
class Reading:
    """One scrape's gauges. A database that could not be read is missing from both."""

    backlog: list[StepBacklog]
    runners: dict[str, int]  # live runners by schema


class _Source:
    """One database and schema: its sagas, and the connection that reads them.

    In *pooler* mode the statement timeout is a SET LOCAL in each scrape's transaction:
    through a transaction pooler a session SET would stay on a server connection that
    other clients get next.
    """

    def __init__(self, pool: ConnectionPool[Any], schema: str, *, pooler: bool = False) -> None:
        self.pool = pool
        self.schema = schema
        self.pooler = pooler
        self.sagas: list[tuple[str, list[str]]] = []
        self._q = {name: render(text, schema)
                   for name, text in named_queries("telemetry.sql").items()}
        self._conn: psycopg.Connection[Any] | None = None

    def read(self, cap: int) -> tuple[list[StepBacklog], int]:
        if self._conn is None or self._conn.closed:
            self._conn = dedicated(self.pool, statement_timeout=None if self.pooler
                                   else STATEMENT_TIMEOUT)
        conn = self._conn
        with conn.transaction() if self.pooler else contextlib.nullcontext():
            if self.pooler:
                conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                    sql.Literal(int(STATEMENT_TIMEOUT * 1000))))
            cur = conn.cursor(row_factory=tuple_row)
            backlog = []
            for name, steps in self.sagas:
                for step, due, age in cur.execute(self._q["due_backlog"], {
                        "name": name, "steps": steps, "cap": cap}).fetchall():
                    backlog.append(StepBacklog(name, step, int(due), float(age)))
            row = cur.execute(self._q["live_runners"]).fetchone()
        return backlog, int(row[0]) if row else 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Gauges:
    """Reads the gauges of *sagas* (see the module docstring); safe from any thread."""

    def __init__(self, sagas: Sequence[Saga], *, cap: int = BACKLOG_CAP) -> None:
        if not isinstance(cap, int) or cap < 1:
            raise ValueError(f"cap must be an integer >= 1, got {cap!r}")
        self.cap = cap
        self._sources: dict[tuple[str, str], _Source] = {}
        self._sagas = list(sagas)
        self._lock = threading.Lock()  # one scrape at a time on the connections

    def __repr__(self) -> str:
        return f"<Gauges sagas={[s.name for s in self._sagas]}>"

    def _resolve(self) -> list[_Source]:
        # Pools are found at the first scrape, not in the constructor: the worker's
        # --dsn is applied after the sagas are loaded.
        if not self._sources:
            for s in self._sagas:
                key = (s.database(), s.schema)
                source = self._sources.get(key) or _Source(s.pool, s.schema, pooler=s.pooler)
                self._sources[key] = source
                source.sagas.append((s.name, list(s.spec().steps)))
        return list(self._sources.values())

    def read(self) -> Reading:
        """Query every database now. One that fails is logged and left out."""
        backlog: list[StepBacklog] = []
        runners: dict[str, int] = {}
        with self._lock:
            for source in self._resolve():
                try:
                    rows, live = source.read(self.cap)
                except psycopg.Error as e:
                    logger.warning("cannot read the gauges of schema %s: %s", source.schema, e,
                                   extra={"action": "gauges_error"})
                    source.close()
                    continue
                backlog.extend(rows)
                runners[source.schema] = runners.get(source.schema, 0) + live
        return Reading(backlog, runners)

    def close(self) -> None:
        with self._lock:
            for source in self._sources.values():
                source.close()
