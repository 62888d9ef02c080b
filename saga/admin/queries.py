"""`AdminStore`: the queries of `sql/admin.sql`, which read a schema for the operator and
purge its finished instances.

Like `saga.store.Store`, every method takes a connection and never commits: the CLI
decides the transactions (one read-only snapshot for `stats`, one statement per purge
batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import Cursor
from psycopg.rows import dict_row, tuple_row

from ..limits import Limit
from ..sqlfiles import check_schema, named_queries, render

Conn = psycopg.Connection[Any]
Row = dict[str, Any]


class Filters(NamedTuple):
    """What `list` selects; None is "any"."""

    saga: str | None = None
    statuses: Sequence[int] | None = None
    step: str | None = None
    older: float | None = None  # seconds: updated before now - older
    newer: float | None = None  # seconds: updated at or after now - newer
    limit: int = 50


class Stats(NamedTuple):
    """What `stats` reports, read in one snapshot."""

    counts: list[tuple[str, int, int]]  # (saga, status, count)
    backlog: list[tuple[str, int, float]]  # (saga, due rows, seconds the oldest waited)
    runners: list[Row]
    orphaned: list[tuple[str, str, int, float]]  # (saga, step, due rows, oldest's wait)
    # (saga, limit as declared, slots in use, due rows waiting), per limit live runners enforce
    limits: list[tuple[str, str, int, int]]


class AdminStore:
    """The admin queries of one schema, rendered once."""

    def __init__(self, schema: str) -> None:
        self.schema = check_schema(schema)
        self._q = {name: render(text, schema)
                   for name, text in named_queries("admin.sql").items()}

    def __repr__(self) -> str:
        return f"<AdminStore schema={self.schema!r}>"

    def _tuples(self, conn: Conn, query: str, params: Mapping[str, object]) -> Cursor[Any]:
        return conn.cursor(row_factory=tuple_row).execute(self._q[query], params)

    def _dicts(self, conn: Conn, query: str, params: Mapping[str, object]) -> list[Row]:
        cur = conn.cursor(row_factory=dict_row).execute(self._q[query], params)
        return cur.fetchall()

    # -- reading ------------------------------------------------------------------------

    def instances(self, conn: Conn, filters: Filters) -> list[Row]:
        """The instances matching *filters*, most recently updated first (no input/state)."""
        params = filters._asdict()
        params["statuses"] = None if filters.statuses is None else list(filters.statuses)
        return self._dicts(conn, "list_instances", params)

    def find(self, conn: Conn, instance: str, saga: str | None = None) -> list[Row]:
        """Every column of the instances called *instance* (in saga *saga* if given)."""
        return self._dicts(conn, "find_instance", {"instance": instance, "saga": saga})

    def by_id(self, conn: Conn, id: int) -> Row | None:
        """Every column of the instance whose row id is *id*, or None."""
        rows = self._dicts(conn, "get_by_id", {"id": id})
        return rows[0] if rows else None

    def stats(self, conn: Conn) -> Stats:
        """Counts, backlog, runners and orphaned rows (one snapshot if *conn* is in a
        REPEATABLE READ transaction)."""
        return Stats(
            counts=[(n, int(s), int(c)) for n, s, c in self._tuples(conn, "count_by_status", {})],
            backlog=[(n, int(c), float(lag))
                     for n, c, lag in self._tuples(conn, "due_backlog", {})],
            runners=self._dicts(conn, "list_runners", {}),
            orphaned=[(n, step, int(c), float(lag))
                      for n, step, c, lag in self._tuples(conn, "orphaned_due", {})],
            limits=[(n, Limit(kind, limit, tuple(steps), per).describe(), int(used),
                     int(waiting)) for n, kind, limit, per, steps, used, waiting
                    in self._tuples(conn, "limit_usage", {})],
        )

    def error_instances(self, conn: Conn, filters: Filters, after: int,
                        batch: int) -> list[tuple[int, str, str]]:
        """The next *batch* ERROR instances past row id *after* that match *filters*
        (its statuses and limit aside): (row id, saga name, instance id)."""
        params = {**filters._asdict(), "after": after, "batch": batch}
        return [(int(i), n, inst) for i, n, inst in self._tuples(conn, "error_instances", params)]

    # -- purging ------------------------------------------------------------------------

    def purge_cutoff(self, conn: Conn, older: float) -> datetime:
        """The database's now, minus *older* seconds."""
        row = self._tuples(conn, "purge_cutoff", {"older": older}).fetchone()
        assert row is not None
        cutoff: datetime = row[0]
        return cutoff

    def purge_count(self, conn: Conn, statuses: Sequence[int], cutoff: datetime,
                    saga: str | None) -> int:
        """How many instances a purge with these arguments would delete now."""
        row = self._tuples(conn, "purge_count", {
            "statuses": list(statuses), "cutoff": cutoff, "saga": saga}).fetchone()
        return 0 if row is None else int(row[0])

    def purge_batch(self, conn: Conn, statuses: Sequence[int], cutoff: datetime,
                    saga: str | None, batch: int, after: int = 0) -> tuple[int, int]:
        """Delete up to *batch* matching instances with a row id above *after* that nobody
        holds; return how many, and the row id to continue after."""
        row = self._tuples(conn, "purge_batch", {
            "statuses": list(statuses), "cutoff": cutoff, "saga": saga, "batch": batch,
            "after": after,
        }).fetchone()
        assert row is not None
        count, last = row
        return int(count), after if last is None else int(last)
