"""Sagas for the worker processes that tests/test_worker.py starts.

A worker imports them as a deployment would (`python -m saga.worker tests.apps.chain:saga`):
the schema comes from SAGA_TEST_SCHEMA, the database from `--dsn` or SAGA_DSN. The test
process builds the same sagas with `build(schema, dsn)` to start instances.

Steps log what they do into `{schema}.executed` on a connection of their own, in
autocommit and without a unique constraint, so that a step run twice shows as two rows.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
from psycopg import sql

SCHEMA = os.environ.get("SAGA_TEST_SCHEMA", "saga")

LOG_TABLE = """
CREATE TABLE {schema}.executed (
    instance text        NOT NULL,
    step     text        NOT NULL,
    event    text        NOT NULL,   -- 'run', or 'start' and 'done' around a long step
    pid      integer     NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_local = threading.local()


def create_log(conn: psycopg.Connection[Any], schema: str) -> None:
    """Create the `executed` table in *schema* (which `init_db()` has created)."""
    conn.execute(sql.SQL(LOG_TABLE).format(schema=sql.Identifier(schema)))


def record(dsn: str | None, schema: str, instance: str, step: str, event: str = "run") -> None:
    """Log one event of a step, committed at once, on this thread's own connection."""
    if dsn is None:
        raise RuntimeError("the saga has no DSN: the worker should have set one")
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(
        sql.SQL("INSERT INTO {}.executed (instance, step, event, pid) VALUES (%s, %s, %s, %s)")
        .format(sql.Identifier(schema)),
        (instance, step, event, os.getpid()),
    )
