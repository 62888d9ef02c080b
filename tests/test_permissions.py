"""The least-privilege setup the README documents: a runtime role with DML only."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from saga import Saga, Status
from saga.schedules import Ticker


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


def revoke_schedules(dsn: str, schema: str) -> None:
    """Take the runtime role's grants on the schedule table away: a role set up before
    schedules existed (GRANT ... ON ALL TABLES covers only the tables there were)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("REVOKE ALL ON {}.schedule FROM {}").format(
            sql.Identifier(schema), sql.Identifier(f"rt_{schema}")))


def orders(dsn: str, schema: str) -> Saga:
    saga = Saga("orders", dsn, schema=schema)

    @saga.step
    def place(input: int) -> int:
        return input

    return saga


def test_a_saga_without_schedules_needs_no_grant_on_the_schedule_table(
        dsn: str, runtime_dsn: str, schema: str, caplog: pytest.LogCaptureFixture) -> None:
    revoke_schedules(dsn, schema)
    with orders(runtime_dsn, schema) as saga, caplog.at_level(logging.WARNING, "saga"):
        saga.start("o1", "place", 1)
        assert saga.run(workers=1, drain=True).completed == 1
        assert saga.get("o1").status is Status.COMPLETE
        # the service thread of a long-running worker: it declares, then has no work
        ticker = Ticker(saga.pool, schema, {"orders": []})
        thread = threading.Thread(target=ticker.loop, args=(threading.Event(),))
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
    warned = [r for r in caplog.records if getattr(r, "action", "") == "schedule_no_grant"]
    assert len(warned) == 2  # one per ticker (a worker makes one per database)
    assert "may not read" in warned[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    with psycopg.connect(runtime_dsn) as conn, pytest.raises(
            psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("SELECT 1 FROM {}.schedule").format(sql.Identifier(schema)))


def test_a_removed_schedule_is_retired_and_reported_when_the_role_may(
        dsn: str, runtime_dsn: str, schema: str, caplog: pytest.LogCaptureFixture) -> None:
    with orders(runtime_dsn, schema) as saga:
        saga.schedule("hourly", "place", every=timedelta(hours=1), input=1)
        saga.run(workers=1, drain=True)  # records it
    with orders(runtime_dsn, schema) as saga, caplog.at_level(logging.WARNING, "saga"):
        saga.run(workers=1, drain=True)  # the next deploy declares none
        with saga.pool.connection() as conn:
            [(retired,)] = conn.execute(sql.SQL(
                "SELECT retired_at IS NOT NULL FROM {}.schedule WHERE name = 'hourly'").format(
                    sql.Identifier(schema))).fetchall()
    assert retired
    assert "declares no schedule any more: retired hourly" in caplog.text
    caplog.clear()
    with orders(runtime_dsn, schema) as saga, caplog.at_level(logging.WARNING, "saga"):
        saga.run(workers=1, drain=True)  # retired already: nothing to say, nothing written
    assert "retired" not in caplog.text
