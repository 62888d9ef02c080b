"""The opt-in step log, recorded by a trigger, checked through real worker runs."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from saga import Saga, SagaError, Status, steplog
from tests.helpers import FAR, Db


def log_of(db: Db, instance: str) -> list[dict[str, Any]]:
    row_id = db.one("SELECT id FROM {s}.instance WHERE instance_id = %s", instance)
    return steplog.history(db.conn, db.schema, row_id)


def build(saga: Saga) -> None:
    @saga.step
    def first(input: Any, state: Any, set_state: Any) -> object:
        set_state({"seen": 1})  # a checkpoint is not the end of a step
        return second(input)

    @saga.step
    def second(input: Any) -> object:
        return third(input, delay=FAR)  # back to PENDING: the test makes it due

    @saga.step
    def third(input: Any) -> object:
        if input.get("fatal"):
            raise SagaError("refused")
        return None


def test_off_by_default_and_records_nothing(saga: Saga, db: Db) -> None:
    build(saga)
    saga.start("a", "first", {})
    saga.run(workers=1, drain=True)
    assert db.row("a")["step"] == "third"
    assert not steplog.enabled(db.conn, db.schema)
    assert log_of(db, "a") == []


def test_records_each_step_of_a_worker_run(saga: Saga, db: Db) -> None:
    build(saga)
    steplog.enable(db.conn, db.schema)
    assert steplog.enabled(db.conn, db.schema)
    saga.start("ok", "first", {})
    saga.start("bad", "first", {"fatal": True})
    saga.run(workers=2, drain=True)
    db.execute("UPDATE {s}.instance SET run_after = now() WHERE status = 0")
    saga.run(workers=2, drain=True)

    ok = log_of(db, "ok")
    assert [(r["step"], r["attempt"], r["status"], r["next_step"]) for r in ok] == [
        ("first", 1, Status.RUNNING, "second"),    # ran on at once: still RUNNING
        ("second", 1, Status.PENDING, "third"),    # a delayed continuation
        ("third", 1, Status.COMPLETE, "third"),
    ]
    assert all(r["started_at"] <= r["ended_at"] for r in ok)
    assert ok[0]["ended_at"] <= ok[1]["started_at"]
    assert all(r["runner_id"] and r["error"] is None for r in ok)

    bad = log_of(db, "bad")
    assert bad[-1]["status"] == Status.ERROR
    assert "refused" in bad[-1]["error"]


def test_records_failed_attempts_and_retries(make_saga: Any, db: Db) -> None:
    saga = make_saga(max_attempts=2, backoff_base=FAR, backoff_max=FAR)

    @saga.step
    def flaky(input: Any) -> object:
        raise RuntimeError("boom")

    steplog.enable(db.conn, db.schema)
    saga.start("f", "flaky", None)
    saga.run(workers=1, drain=True)
    db.make_due("f")
    saga.run(workers=1, drain=True)
    rows = log_of(db, "f")
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, Status.PENDING),
                                                           (2, Status.ERROR)]
    assert all("boom" in r["error"] for r in rows)


def test_cancel_request_and_set_state_are_not_step_ends(saga: Saga, db: Db) -> None:
    build(saga)
    steplog.enable(db.conn, db.schema)
    saga.start("c", "first", {})
    # By hand: a claim, a checkpoint, a cancel request, then the runner's cancel.
    db.execute("UPDATE {s}.instance SET status = 1, attempts = 1, runner_id = 'r'")
    db.execute("UPDATE {s}.instance SET state = '1'")
    saga.cancel("c")
    assert [r["ended_at"] for r in log_of(db, "c")] == [None]  # still running
    db.execute("UPDATE {s}.instance SET status = 4, runner_id = NULL")
    [row] = log_of(db, "c")
    assert row["status"] == Status.CANCELLED
    assert row["ended_at"] is not None


def test_a_claim_handed_back_leaves_no_row(saga: Saga, db: Db) -> None:
    build(saga)
    steplog.enable(db.conn, db.schema)
    saga.start("r", "first", {})
    db.execute("UPDATE {s}.instance SET status = 1, attempts = 1, runner_id = 'r'")
    db.execute("UPDATE {s}.instance SET status = 0, attempts = 0, runner_id = NULL")
    assert log_of(db, "r") == []


def test_turned_off_again_and_purged_with_its_instance(saga: Saga, db: Db) -> None:
    build(saga)
    steplog.enable(db.conn, db.schema)
    saga.start("p", "first", {})
    saga.run(workers=1, drain=True)
    assert len(log_of(db, "p")) == 2
    steplog.disable(db.conn, db.schema)
    assert not steplog.enabled(db.conn, db.schema)
    db.execute("DELETE FROM {s}.instance")
    assert db.one("SELECT count(*) FROM {s}.step_log") == 0


def test_needs_the_tables_owner(saga: Saga, db: Db) -> None:
    role = f"saga_steplog_{db.schema}"  # roles are the cluster's: one per test
    db.execute(f'CREATE ROLE "{role}"')
    try:
        db.execute(f'GRANT USAGE ON SCHEMA {{s}} TO "{role}"')
        with db.conn.transaction():
            db.execute(f'SET LOCAL ROLE "{role}"')
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                steplog.enable(db.conn, db.schema)
    finally:
        db.execute(f'DROP OWNED BY "{role}"')
        db.execute(f'DROP ROLE "{role}"')


def test_a_step_begun_before_the_log_was_on(saga: Saga, db: Db) -> None:
    build(saga)
    saga.start("m", "first", {})
    db.execute("UPDATE {s}.instance SET status = 1, attempts = 1, runner_id = 'r'")
    steplog.enable(db.conn, db.schema)
    db.execute("UPDATE {s}.instance SET status = 2, runner_id = NULL")
    [row] = log_of(db, "m")
    assert row["started_at"] is None
    assert (row["step"], row["attempt"], row["status"]) == ("first", 1, Status.COMPLETE)


def test_truncate_of_instances_empties_the_log(saga: Saga, db: Db) -> None:
    build(saga)
    steplog.enable(db.conn, db.schema)
    saga.start("t", "first", {})
    saga.run(workers=1, drain=True)
    assert db.one("SELECT count(*) FROM {s}.step_log") == 2
    db.execute("TRUNCATE {s}.instance RESTART IDENTITY")
    assert db.one("SELECT count(*) FROM {s}.step_log") == 0
