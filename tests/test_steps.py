"""What a step gets and gives: set_state, conn steps, parameters, logger, values and decoding."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from saga import ConcurrencyException, Saga, SagaError, Status
from tests.helpers import FAR, Db


@dataclass
class Order:
    sku: str
    qty: int


@dataclass
class Tally:
    skus: list[str]


# -- set_state --------------------------------------------------------------------------


def test_set_state_is_a_checkpoint_that_survives_a_failure(slow_retry_saga: Saga,
                                                           db: Db) -> None:
    saga, seen = slow_retry_saga, []

    @saga.step
    def work(input: object, state: Any, set_state: Callable[[object], None]) -> None:
        seen.append(state)
        if state is None:
            set_state({"progress": 1})
            raise RuntimeError("crash after the checkpoint")

    saga.start("i", work, 1)
    saga.run(workers=1, drain=True)
    assert saga.get("i").status is Status.PENDING
    assert saga.get_state("i") == {"progress": 1}
    db.make_due("i")
    saga.run(workers=1, drain=True)
    assert seen == [None, {"progress": 1}]
    assert saga.get("i").status is Status.COMPLETE


def test_set_state_after_losing_the_lease_raises(saga: Saga, db: Db) -> None:
    raised: list[BaseException] = []

    @saga.step
    def work(input: object, state: object, set_state: Callable[[object], None]) -> str:
        db.steal("i")
        try:
            set_state({"late": True})
        except ConcurrencyException as e:
            raised.append(e)
        return "outcome"

    saga.start("i", work, 1, {"kept": True})
    saga.run(workers=1, drain=True)
    assert len(raised) == 1
    row = saga.get("i")  # neither the checkpoint nor the outcome was written
    assert (row.status, row.runner_id, row.state) == (Status.RUNNING, "thief", {"kept": True})


# -- conn steps -------------------------------------------------------------------------


def effects(db: Db) -> list[str]:
    return [i for (i,) in db.rows("SELECT instance FROM {s}.effect ORDER BY instance")]


def test_conn_step_writes_roll_back_on_failure_and_commit_once(
    slow_retry_saga: Saga, db: Db
) -> None:
    saga, tries = slow_retry_saga, Counter[str]()
    db.rows("CREATE TABLE {s}.effect (instance text)")
    insert = db.sql("INSERT INTO {s}.effect VALUES (%s)")

    @saga.step
    def work(input: str, state: object, set_state: Callable[[object], None], *,
             conn: psycopg.Connection[Any]) -> object:
        tries[input] += 1
        conn.execute(insert, (input,))
        if input == "flaky" and tries[input] == 1:
            set_state({"checkpoint": 1})  # on its own connection: survives the rollback
            raise RuntimeError("after the insert")
        return then(input) if input == "chain" else None

    @saga.step
    def then(input: str, *, conn: psycopg.Connection[Any]) -> None:
        conn.execute(insert, (input + "-then",))

    saga.start("flaky", work, "flaky")
    saga.start("chain", work, "chain")
    saga.run(workers=1, drain=True)
    assert effects(db) == ["chain", "chain-then"]
    assert saga.get("flaky").status is Status.PENDING
    assert saga.get_state("flaky") == {"checkpoint": 1}
    db.make_due("flaky")
    saga.run(workers=1, drain=True)
    assert effects(db) == ["chain", "chain-then", "flaky"]
    assert tries == {"flaky": 2, "chain": 1}
    assert {saga.get(i).status for i in ("flaky", "chain")} == {Status.COMPLETE}


def test_conn_step_writes_roll_back_when_the_lease_is_lost(saga: Saga, db: Db) -> None:
    db.rows("CREATE TABLE {s}.effect (instance text)")
    ran = []

    @saga.step
    def work(input: str, *, conn: psycopg.Connection[Any]) -> str:
        conn.execute(db.sql("INSERT INTO {s}.effect VALUES (%s)"), (input,))
        db.steal("i")  # on another connection, before the outcome is written
        ran.append(input)
        return "outcome"

    saga.start("i", work, "i")
    saga.run(workers=1, drain=True)
    assert ran == ["i"]
    assert effects(db) == []
    row = saga.get("i")
    assert (row.status, row.runner_id, row.state) == (Status.RUNNING, "thief", None)


# -- step parameters and values ---------------------------------------------------------


def test_steps_get_the_leading_parameters_they_declare(
    saga: Saga, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="saga.steps")
    seen: list[object] = []

    @saga.step
    def p1(input: int) -> object:
        seen.append(input)
        return p2(input + 1)

    @saga.step
    def p2(input: int, state: object) -> object:
        seen.append((input, state))
        return p3(input + 1)

    @saga.step
    def p3(input: int, state: object, set_state: Callable[[object], None]) -> object:
        set_state({"k": "set"})
        seen.append((input, state))
        return p4(input + 1)

    @saga.step
    def p4(input: int, state: object, set_state: object,
           logger: logging.LoggerAdapter[logging.Logger]) -> None:
        seen.append((input, state, isinstance(logger, logging.LoggerAdapter)))
        logger.info("hello %s", input)

    saga.start("i", p1, 1, {"k": "start"})
    saga.run(workers=1, drain=True)
    assert seen == [1, (2, {"k": "start"}), (3, {"k": "start"}), (4, {"k": "set"}, True)]
    [record] = [r for r in caplog.records if r.getMessage() == "hello 4"]
    assert record.name == "saga.steps"
    extras = {k: getattr(record, k) for k in ("saga", "instance", "step", "attempt")}
    assert extras == {"saga": "test", "instance": "i", "step": "p4", "attempt": 1}
    assert saga.get("i").status is Status.COMPLETE


def test_dataclasses_round_trip_through_annotations(saga: Saga, db: Db) -> None:
    seen: list[tuple[object, object]] = []

    @saga.step
    def take(input: Order, state: Tally) -> object:
        seen.append((input, state))
        return settle(input, Tally(skus=[*state.skus, input.sku]), delay=FAR)

    @saga.step
    def settle(input: Order, state: Tally) -> Tally:
        seen.append((input, state))
        return Tally(skus=[*state.skus, "settled"])

    saga.start("i", take, Order("apple", 2), Tally([]))
    saga.run(workers=1, drain=True)
    assert saga.get_state("i") == Tally(["apple"])
    assert saga.get("i").input == Order("apple", 2)
    assert db.one("SELECT state FROM {s}.instance") == {"skus": ["apple"]}  # readable JSON
    db.make_due("i")
    saga.run(workers=1, drain=True)
    assert seen == [(Order("apple", 2), Tally([])), (Order("apple", 2), Tally(["apple"]))]
    assert saga.get_state("i") == Tally(["apple", "settled"])
    assert saga.get("i").status is Status.COMPLETE


def test_undecodable_row_errors_and_the_worker_goes_on(saga: Saga, db: Db) -> None:
    ran = []

    @saga.step
    def take(input: Order) -> None:
        ran.append(input)

    db.rows("INSERT INTO {s}.instance (name, instance_id, step, input, run_after) "
            "VALUES ('test', 'bad', 'take', '{{\"sku\": 1}}', now() - interval '1 hour')")
    saga.start("good", take, Order("pear", 1))
    stats = saga.run(workers=1, drain=True)
    bad = saga.get("bad")
    assert bad.status is Status.ERROR
    assert "cannot run this row: input of step 'take' does not decode" in bad.error
    assert "$.sku: expected str" in bad.error
    assert saga.get("good").status is Status.COMPLETE
    assert ran == [Order("pear", 1)]
    assert (stats.failed, stats.completed) == (1, 1)


def test_rows_of_unknown_steps_are_not_claimed(saga: Saga, db: Db) -> None:
    @saga.step
    def known(input: object) -> None: ...

    db.rows("INSERT INTO {s}.instance (name, instance_id, step, input) "
            "VALUES ('test', 'retired', 'gone', '1')")
    saga.start("known", known, 1)
    saga.run(workers=2, drain=True)
    row = saga.get("retired")
    assert (row.status, row.attempts, row.runner_id, row.error) == (Status.PENDING, 0, None, None)
    assert saga.get("known").status is Status.COMPLETE


def test_set_state_checks_the_value_against_the_state_annotation(saga: Saga) -> None:
    seen: list[str] = []

    @saga.step
    def work(input: object, state: Tally | None, set_state: Callable[[object], None]) -> str:
        try:
            set_state({"skus": "not a list"})
        except TypeError as e:
            seen.append(str(e))
        set_state(Tally(["a"]))
        return "done"

    saga.start("x", work)
    saga.run(workers=1, drain=True)
    [complaint] = seen
    assert "state does not fit step 'work'" in complaint
    assert saga.get("x").status is Status.COMPLETE


@pytest.mark.parametrize(("message", "stored"), [
    ("bad \x00 byte", "bad \\x00 byte"),  # text columns cannot hold NUL
    ("   ", "   "),  # blank: nothing to quote in the log line, still stored
])
def test_saga_error_messages_postgres_would_reject_still_end_in_error(
    saga: Saga, message: str, stored: str
) -> None:
    runs: list[int] = []

    @saga.step
    def work(input: object) -> None:
        runs.append(1)
        raise SagaError(message)

    saga.start("x", work)
    stats = saga.run(workers=1, drain=True)
    record = saga.get("x")
    assert (record.status, record.error, runs) == (Status.ERROR, stored, [1])
    assert stats.failed == 1


def test_callers_and_pools_with_dict_rows_work(dsn: str, schema: str) -> None:
    """The library reads tuples whatever row factory a caller's connection or pool has."""
    pool: ConnectionPool[Any] = ConnectionPool(
        dsn, kwargs={"row_factory": dict_row}, min_size=1, max_size=6, open=False)
    pool.open()
    try:
        saga = Saga("dicts", pool=pool, schema=schema)
        saga.init_db()

        @saga.step
        def work(input: Order) -> Tally:
            return Tally([input.sku])

        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            saga.start("x", work, Order("a", 1), conn=conn)
            saga.start("x2", work, Order("b", 1), conn=conn)
            assert saga.get("x", conn=conn).status is Status.PENDING
        saga.run(workers=2, drain=True)
        assert saga.get_state("x") == {"skus": ["a"]}
        with psycopg.connect(dsn, row_factory=dict_row) as conn, \
                pytest.raises(ConcurrencyException, match="COMPLETE"):
            saga.call("x", work, Order("c", 1), conn=conn)
    finally:
        pool.close()
