"""Migrations: `init_db()`, concurrency under the advisory lock, `python -m saga migrate`,
and what 001 creates."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql

from saga import Saga
from saga.migrate import migrate
from saga.sqlfiles import migrations
from tests.helpers import Db

Conn = psycopg.Connection[Any]
FIRST = "001_init.sql"


def recorded(db: Db) -> list[tuple[int, str]]:
    rows = db.rows("SELECT version, name FROM {s}.migration ORDER BY version")
    return [(int(v), str(n)) for v, n in rows]


def schema_exists(db: Db) -> bool:
    return db.rows("SELECT 1 FROM pg_namespace WHERE nspname = %s", db.schema) != []


def all_migrations() -> list[str]:
    return [name for _, name, _ in migrations()]


def test_migration_files_are_numbered_in_order() -> None:
    found = migrations()
    assert found[0][:2] == (1, FIRST)
    versions = [v for v, _, _ in found]
    # No duplicate; a gap is allowed while branches that hold numbers are unmerged.
    assert versions == sorted(set(versions))


def test_init_db_applies_and_records_then_applies_nothing(dsn: str, schema: str, db: Db) -> None:
    assert not schema_exists(db)
    with Saga("m", dsn, schema=schema) as s:
        applied = s.init_db()
        assert applied[0] == FIRST
        assert applied == all_migrations()
        assert [name for _, name in recorded(db)] == applied
        assert recorded(db)[0] == (1, FIRST)
        assert s.init_db() == []
        assert [name for _, name in recorded(db)] == applied  # recorded once
    with Saga("another-saga", dsn, schema=schema) as other:
        assert other.init_db() == []  # per schema, not per saga


def test_migrate_needs_a_connection_outside_a_transaction(dsn: str, schema: str, db: Db) -> None:
    with psycopg.connect(dsn) as c:
        c.execute("SELECT 1")
        with pytest.raises(ValueError, match="not inside a transaction"):
            migrate(c, schema)
        c.rollback()
        assert not c.autocommit
        assert migrate(c, schema) == all_migrations()
        assert not c.autocommit  # restored
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert schema_exists(db)


def test_two_schemas_migrate_independently(dsn: str, schema: str, other_schema: str) -> None:
    with psycopg.connect(dsn) as c:
        assert migrate(c, schema) == all_migrations()
        assert migrate(c, other_schema) == all_migrations()
        assert migrate(c, schema) == []


def test_concurrent_init_db_on_a_fresh_schema(dsn: str, schema: str, db: Db) -> None:
    threads = 6
    barrier = threading.Barrier(threads)
    results: list[list[str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def init() -> None:
        try:
            with Saga("m", dsn, schema=schema) as s:
                s.pool.wait(timeout=10)  # connected: the race is on init_db alone
                barrier.wait(timeout=10)
                applied = s.init_db()
            with lock:
                results.append(applied)
        except BaseException as e:
            with lock:
                errors.append(e)

    workers = [threading.Thread(target=init, name=f"init-{i}") for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in workers)
    assert errors == []
    assert len(results) == threads
    # Each migration was applied once, by one of them (each takes the lock per migration).
    assert sorted(name for applied in results for name in applied) == all_migrations()
    assert all(applied == sorted(applied) for applied in results)
    assert [name for _, name in recorded(db)] == all_migrations()


def test_migrate_leaves_no_advisory_lock_behind(dsn: str, schema: str, db: Db) -> None:
    """Transaction-level locks only: nothing stays locked on the connection afterwards,
    so a pooler may hand its server connection to anyone."""
    with psycopg.connect(dsn) as c:
        assert migrate(c, schema) == all_migrations()
        held = c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                         "AND pid = pg_backend_pid()").fetchone()
        assert held == (0,)


def test_a_migration_waits_for_the_lock_in_its_own_transaction(
        dsn: str, schema: str, db: Db) -> None:
    """While another transaction holds the schema's migration lock, migrate() waits;
    it applies everything once that transaction ends."""
    key = "SELECT pg_advisory_xact_lock(hashtextextended('pgsaga migrate ' || %s, 0))"
    done: list[list[str]] = []

    def run() -> None:
        with psycopg.connect(dsn) as c:
            done.append(migrate(c, schema))

    with psycopg.connect(dsn) as holder:
        holder.execute(key, (schema,))  # held until holder's transaction ends
        t = threading.Thread(target=run, name="migrate")
        t.start()
        t.join(0.5)
        assert t.is_alive()
        assert not done
        holder.rollback()
    t.join(10)
    assert done == [all_migrations()]


# -- what 001 creates --------------------------------------------------------------------------


@pytest.fixture
def migrated(dsn: str, schema: str) -> str:
    with psycopg.connect(dsn) as c:
        migrate(c, schema)
    return schema


def test_instance_table_has_fillfactor_80(dsn: str, migrated: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        found = c.execute(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = 'instance'", (migrated,)).fetchone()
    assert found is not None
    assert "fillfactor=80" in (found[0] or [])


def test_partial_due_index_exists(dsn: str, migrated: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        found = c.execute(
            "SELECT pg_get_indexdef(i.indexrelid), pg_get_expr(i.indpred, i.indrelid),"
            "       i.indrelid::regclass::text"
            "  FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
            (f"{migrated}.instance_due_idx",)).fetchone()
    assert found is not None, "instance_due_idx is missing"
    indexdef, predicate, table = found
    assert table == f"{migrated}.instance"
    assert "(name, step, run_after)" in indexdef  # from 003
    assert predicate == "(status = 0)"


def test_instance_table_columns_and_unique_key(dsn: str, migrated: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        columns = dict(c.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'instance'", (migrated,)).fetchall())
        table = sql.SQL("{}.instance").format(sql.Identifier(migrated))
        insert = sql.SQL("INSERT INTO {} (name, instance_id, step) VALUES ('n', 'i', 's')")
        c.execute(insert.format(table))
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute(insert.format(table))
        with pytest.raises(psycopg.errors.CheckViolation):
            c.execute(sql.SQL("UPDATE {} SET status = 5").format(table))
        c.execute(sql.SQL("UPDATE {} SET status = 4").format(table))  # CANCELLED, from 002
    assert columns == {
        "id": "bigint", "name": "text", "instance_id": "text", "step": "text",
        "input": "jsonb", "state": "jsonb", "status": "smallint",
        "run_after": "timestamp with time zone", "runner_id": "text", "attempts": "integer",
        "error": "text", "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone", "cancel_requested": "boolean",
        "called": "boolean", "key": "text", "limited": "boolean",
        "trace_parent": "text", "trace_call": "text", "claims": "integer",  # 007
    }


# -- python -m saga migrate --------------------------------------------------------------------


def run_cli(*args: str, env_dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None if env_dsn is None else {**os.environ, "SAGA_DSN": env_dsn}
    return subprocess.run(
        [sys.executable, "-m", "saga", "migrate", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )


def test_cli_migrate(dsn: str, schema: str, db: Db) -> None:
    done = run_cli("--dsn", dsn, "--schema", schema)
    assert done.returncode == 0, done.stderr
    assert f"applied {FIRST}" in done.stdout
    assert f"schema {schema} is up to date" in done.stdout
    assert [name for _, name in recorded(db)] == all_migrations()

    again = run_cli("--dsn", dsn, "--schema", schema)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"schema {schema} is up to date"


def test_cli_migrate_reads_saga_dsn(dsn: str, schema: str, db: Db) -> None:
    done = run_cli("--schema", schema, env_dsn=dsn)
    assert done.returncode == 0, done.stderr
    assert f"schema {schema} is up to date" in done.stdout
    assert schema_exists(db)


@pytest.mark.parametrize("bad", ["x; drop table y", "Bad-Name", ""])
def test_cli_migrate_with_an_invalid_schema(dsn: str, bad: str) -> None:
    done = run_cli("--dsn", dsn, "--schema", bad)
    assert done.returncode == 2
    assert "schema must be a lowercase identifier" in done.stderr
    assert done.stdout == ""


def test_cli_migrate_without_a_database() -> None:
    done = run_cli("--schema", "s", env_dsn="")
    assert done.returncode == 1
    assert "no database" in done.stderr


def test_cli_migrate_with_an_unreachable_database() -> None:
    done = run_cli("--dsn", "postgresql://u:s3cret@127.0.0.1:1/x", "--schema", "s")
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "s3cret" not in output
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert lines[0].startswith("pgsaga: error: cannot connect to")
    assert "host=127.0.0.1 port=1 dbname=x user=u" in lines[0]


def test_cli_migrate_with_an_unreachable_database_without_password() -> None:
    done = run_cli("--dsn", "postgresql://nobody@127.0.0.1:1/x", "--schema", "s")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr

