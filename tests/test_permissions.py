"""The least-privilege setup the README documents: a runtime role with DML only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from saga import Saga, Status


@pytest.fixture
def runtime_dsn(dsn: str, schema: str) -> Iterator[str]:
    """A role granted exactly what the README lists, on a schema migrated by its owner."""
    with Saga("owner", dsn, schema=schema) as owner:
        owner.init_db()
    role = sql.Identifier(f"rt_{schema}")
    s = sql.Identifier(schema)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        try:
            for grant in (
                "GRANT USAGE ON SCHEMA {s} TO {r}",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
                "GRANT USAGE ON SEQUENCE {s}.instance_id_seq TO {r}",
            ):
                admin.execute(sql.SQL(grant).format(s=s, r=role))
            yield make_conninfo(dsn, user=f"rt_{schema}")
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(role))
            admin.execute(sql.SQL("DROP ROLE {}").format(role))


def test_the_api_and_a_worker_run_under_a_dml_only_role(runtime_dsn: str, schema: str) -> None:
    with Saga("orders", runtime_dsn, schema=schema) as saga:
        @saga.step
        def first(input: int) -> object:
            return second(input + 1)

        @saga.step
        def second(input: int) -> int:
            return input * 10

        assert saga.init_db() == []  # up to date: nothing to create
        saga.start("o1", first, 1)
        stats = saga.run(workers=2, drain=True)
        assert (stats.steps, stats.completed) == (2, 1)
        assert saga.get("o1").status is Status.COMPLETE
        assert saga.get_state("o1") == 20


def test_the_runtime_role_cannot_change_the_schema(runtime_dsn: str, schema: str) -> None:
    with psycopg.connect(runtime_dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("DROP TABLE {}.instance").format(sql.Identifier(schema)))


def test_schedules_tick_and_pause_under_a_dml_only_role(runtime_dsn: str, schema: str) -> None:
    with Saga("nightly", runtime_dsn, schema=schema) as saga:
        @saga.step
        def report(input: str) -> str:
            return input

        saga.schedule("often", report, every=timedelta(seconds=1), input="x")
        saga.schedule("weekly", report, cron="0 3 * * 1", tz="Europe/Berlin", input="y")
        saga.run(workers=1, drain=True)  # records both schedules
        with saga.pool.connection() as conn:
            conn.execute(sql.SQL("UPDATE {}.schedule SET next_tick = next_tick - interval "
                                 "'2 seconds' WHERE name = 'often'").format(
                                     sql.Identifier(schema)))
        stats = saga.run(workers=1, drain=True)
        assert stats.completed == 1
        saga.pause_schedule("weekly")
        saga.resume_schedule("weekly")
