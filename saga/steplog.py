"""The opt-in step log: turn the `step_log` trigger of a schema on or off, and read it.

The trigger (`sql/004_step_log.sql`) records each step a worker runs in the transaction
that writes its outcome; it is created disabled, since it costs every step two writes.
Turning it on or off is `ALTER TABLE ... ENABLE/DISABLE TRIGGER`, which needs the table's
owner (the migration role) and briefly takes a lock that waits for running transactions
on the table.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from .sqlfiles import check_schema, named_queries, render

Conn = psycopg.Connection[Any]


def _query(name: str, schema: str) -> str:
    return render(named_queries("web.sql")[name], check_schema(schema))


def installed(conn: Conn, schema: str) -> bool:
    """Whether *schema* has the step log (migration 004)."""
    row = conn.cursor(row_factory=tuple_row).execute(
        "SELECT to_regclass(%s) IS NOT NULL", (render("{schema}.step_log", schema),),
    ).fetchone()
    return bool(row and row[0])


def enabled(conn: Conn, schema: str) -> bool:
    """Whether *schema*'s step log records steps (False if it has no step log yet)."""
    row = conn.cursor(row_factory=tuple_row).execute(
        _query("steplog_enabled", schema), {"table": render("{schema}.instance", schema)},
    ).fetchone()
    return bool(row and row[0])


def enable(conn: Conn, schema: str, on: bool = True) -> None:
    """Turn the step log of *schema* on (or off with *on* False); the caller commits."""
    conn.execute(_query("steplog_on" if on else "steplog_off", schema))


def disable(conn: Conn, schema: str) -> None:
    """Turn the step log of *schema* off; the rows recorded so far stay."""
    enable(conn, schema, on=False)


def history(conn: Conn, schema: str, instance: int, limit: int = 500) -> list[dict[str, Any]]:
    """The last *limit* log rows of the instance with row id *instance*, oldest first."""
    cur = conn.cursor(row_factory=dict_row).execute(
        _query("steplog_history", schema), {"instance": instance, "limit": limit})
    return list(reversed(cur.fetchall()))
