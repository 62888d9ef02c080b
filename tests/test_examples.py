"""The async original's README examples, written for pgsaga and run to completion."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from saga import ConcurrencyException, Saga, SagaNotFound, Status
from tests.helpers import Db

CONFIRMED = "CONFIRMED"
TIME_OUT = "TIME_OUT"


@dataclass
class TransferInput:
    source: str
    target: str
    amount: int


@dataclass
class RetryState:
    failure_count: int = 0


@pytest.fixture
def saga(make_saga: Callable[..., Saga]) -> Saga:
    """The examples' saga, named "example"."""
    return make_saga("example")


def drain(saga: Saga) -> None:
    saga.run(workers=2, drain=True)


def test_fund_transfer(saga: Saga, db: Db) -> None:
    db.rows("CREATE TABLE {s}.account (id text PRIMARY KEY, balance int NOT NULL)")
    db.rows("INSERT INTO {s}.account VALUES ('alice', 100), ('bob', 0)")
    move = db.sql("UPDATE {s}.account SET balance = balance + %s WHERE id = %s")

    @saga.step
    def debit(input: TransferInput, state: None, set_state: Any, logger: Any, *,
              conn: psycopg.Connection[Any]) -> object:
        conn.execute(move, (-input.amount, input.source))  # commits with the continuation
        logger.info("debited %s from %s", input.amount, input.source)
        return credit(input)

    @saga.step
    def credit(input: TransferInput, state: None, set_state: Any, logger: Any, *,
               conn: psycopg.Connection[Any]) -> None:
        conn.execute(move, (input.amount, input.target))

    saga.start("tx-42", debit, TransferInput("alice", "bob", 10), None)
    drain(saga)
    assert saga.get("tx-42").status is Status.COMPLETE
    assert db.rows("SELECT id, balance FROM {s}.account ORDER BY id") == [("alice", 90),
                                                                          ("bob", 10)]


def test_compensation_when_a_later_step_fails(saga: Saga) -> None:
    done: list[str] = []

    def do_some_work(what: str) -> None:
        if what == "step2":
            raise RuntimeError("step2 cannot be done")
        done.append(what)

    @saga.step
    def step1(input: object, state: object, set_state: object) -> object:
        do_some_work("step1")
        return step2(input)

    @saga.step
    def step2(input: object, state: object, set_state: object) -> object:
        try:
            do_some_work("step2")
        except RuntimeError:
            return rollback_step1(input)
        return None

    @saga.step
    def rollback_step1(input: object, state: object, set_state: object) -> None:
        done.append("rollback_step1")

    saga.start("order-1", step1, {"order": 1})
    drain(saga)
    assert done == ["step1", "rollback_step1"]
    row = saga.get("order-1")
    assert (row.status, row.step) == (Status.COMPLETE, "rollback_step1")


def test_own_retry_policy_with_exponential_backoff(saga: Saga, db: Db) -> None:
    calls = []

    def call_external_api() -> None:
        calls.append(len(calls))
        if len(calls) <= 3:
            raise ConnectionError("the API is down")

    @saga.step
    def retry_example(input: object, state: RetryState, set_state: object) -> object:
        try:
            call_external_api()
        except ConnectionError:
            state.failure_count += 1
            return retry_example(input, state, delay=2 ** state.failure_count)
        return None

    saga.start("api-call", retry_example, None, RetryState())
    delays = []
    drain(saga)
    while (row := saga.get("api-call")).status is Status.PENDING:
        delays.append((row.run_after - row.updated_at).total_seconds())
        db.make_due("api-call")  # instead of waiting 2, 4, 8 seconds
        drain(saga)
    assert delays == pytest.approx([2.0, 4.0, 8.0], abs=1e-3)
    assert len(calls) == 4
    assert (row.status, row.state, row.attempts) == (Status.COMPLETE, RetryState(3), 1)


def webhook_saga(saga: Saga, started: Callable[[], None] = lambda: None) -> tuple[Any, list[str]]:
    """Define the payment example; return `deposit` and the inputs `webhook` ran with."""
    seen: list[str] = []

    @saga.step
    def deposit(input: object, state: object, set_state: object) -> object:
        started()  # here the gateway is called
        return webhook(TIME_OUT, delay=5 * 60)  # wait for 5 minutes

    @saga.step
    def webhook(input: str, state: object, set_state: object) -> str:
        seen.append(input)
        return "paid" if input == CONFIRMED else "expired"

    return deposit, seen


def test_webhook_confirms_a_payment(saga: Saga) -> None:
    deposit, seen = webhook_saga(saga)
    saga.start("pay-1", deposit, {"amount": 5})
    drain(saga)
    row = saga.get("pay-1")
    assert (row.status, row.step, row.input) == (Status.PENDING, "webhook", TIME_OUT)
    assert (row.run_after - row.updated_at).total_seconds() == pytest.approx(300, abs=1e-3)

    saga.call("pay-1", "webhook", CONFIRMED)  # from the payment gateway's webhook
    drain(saga)
    assert seen == [CONFIRMED]
    assert (saga.get("pay-1").status, saga.get_state("pay-1")) == (Status.COMPLETE, "paid")
    with pytest.raises(ConcurrencyException, match="COMPLETE"):
        saga.call("pay-1", "webhook", CONFIRMED)


def test_webhook_times_out(saga: Saga, db: Db) -> None:
    deposit, seen = webhook_saga(saga)
    saga.start("pay-2", deposit, {"amount": 5})
    drain(saga)
    db.make_due("pay-2")  # five minutes later, and no call came
    drain(saga)
    assert seen == [TIME_OUT]
    assert (saga.get("pay-2").status, saga.get_state("pay-2")) == (Status.COMPLETE, "expired")


def test_webhook_cannot_call_a_running_or_unknown_saga(saga: Saga) -> None:
    started, release = threading.Event(), threading.Event()

    def call_gateway_slowly() -> None:
        started.set()
        release.wait(10.0)

    deposit, seen = webhook_saga(saga, call_gateway_slowly)
    saga.start("pay-3", deposit, {"amount": 5})
    worker = threading.Thread(target=drain, args=(saga,), daemon=True)
    worker.start()
    try:
        assert started.wait(10.0)
        with pytest.raises(ConcurrencyException, match="RUNNING"):
            saga.call("pay-3", "webhook", CONFIRMED)
    finally:
        release.set()
        saga.stop()
        worker.join(15.0)
    assert not worker.is_alive()
    assert saga.get("pay-3").status is Status.PENDING  # now the webhook's retry would do
    with pytest.raises(SagaNotFound):
        saga.call("no-such-payment", "webhook", CONFIRMED)
    assert seen == []
