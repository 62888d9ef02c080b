"""Apply `sql/NNN_*.sql` in order, once each, each in a transaction of its own that
takes a transaction-level advisory lock first.

Safe when several processes start at once: the lock serializes the transactions, and
each, once it holds the lock, finds the versions the others recorded in
`{schema}.migration` before deciding. A transaction-level lock (not a session lock) is
released by the COMMIT or ROLLBACK of the transaction that took it, on the server
connection that ran it; so it holds through a transaction-pooling pooler too, where a
session lock would stay with whichever client got the server connection next.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .sqlfiles import check_schema, migrations, render

logger = logging.getLogger(__name__)

# Advisory lock keys are bigints: derive one per schema so that two schemas in one
# database migrate independently.
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('pgsaga migrate ' || %(schema)s, 0))"
# Only when the schema is missing: CREATE SCHEMA checks the database's CREATE privilege
# even with IF NOT EXISTS, and a role that owns an existing schema may lack it.
_CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {schema}"
_PREPARE = """
CREATE TABLE IF NOT EXISTS {schema}.migration (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


def migrate(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Apply the missing migrations to *schema*; return the names of those applied.

    *conn* must not be inside a transaction: each migration commits on its own.
    """
    check_schema(schema)
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ValueError("migrate() needs a connection that is not inside a transaction")
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        # Up to date: touch nothing, so that a role without CREATE can call init_db().
        if not {v for v, _, _ in migrations()} - _applied(conn, schema):
            return []
        return _apply_missing(conn, schema)
    finally:
        if not conn.closed:
            conn.autocommit = autocommit


def _applied(conn: psycopg.Connection[Any], schema: str) -> set[int]:
    """The versions recorded in *schema*, if it has a migration table."""
    cur = conn.cursor(row_factory=tuple_row)
    exists = cur.execute("SELECT to_regclass(%s) IS NOT NULL",
                         (render("{schema}.migration", schema),)).fetchone()
    if not (exists and exists[0]):
        return set()
    return {v for (v,) in cur.execute(render("SELECT version FROM {schema}.migration", schema))}


def _apply_missing(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    # Under the lock: two concurrent CREATE ... IF NOT EXISTS of one name can both pass
    # the check and one then fails on a unique index of the catalog.
    with conn.transaction():
        conn.execute(_LOCK, {"schema": schema})
        # Read pg_namespace itself, not the catalog cache (to_regnamespace): this
        # transaction began before the lock was granted, and its cache may still say
        # "no such schema" after the previous holder created it. Opening the catalog
        # takes a relation lock, which also makes the backend take in the catalog
        # changes committed meanwhile, so the DDL below sees them too.
        found = conn.cursor(row_factory=tuple_row).execute(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s)",
            (schema,)).fetchone()
        if not (found and found[0]):
            conn.execute(render(_CREATE_SCHEMA, schema))
        conn.execute(render(_PREPARE, schema))
    record = render("INSERT INTO {schema}.migration (version, name) VALUES (%s, %s)", schema)
    applied = []
    for version, name, text in migrations():
        with conn.transaction():
            conn.execute(_LOCK, {"schema": schema})
            # Read after the lock is granted: in READ COMMITTED this statement's snapshot
            # sees what the previous holder committed, so no version runs twice; and the
            # versions before this one are recorded already (by us or by others), since
            # every process goes through them in the same order.
            if version in _applied(conn, schema):
                continue
            conn.execute(render(text, schema))
            conn.execute(record, (version, name))
        logger.info("applied migration %s to schema %s", name, schema,
                    extra={"action": "migrate", "schema": schema, "migration": name})
        applied.append(name)
    return applied
