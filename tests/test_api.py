"""The API used as meant: start, get, call, the records, `conn=` (the outbox), pools, DSNs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

import saga
from saga import (
    ConcurrencyException,
    DuplicateSaga,
    Instance,
    Saga,
    SagaException,
    SagaNotFound,
    Status,
    Step,
)
from tests.helpers import Account, Confirmation, Db, Registry, TransferInput


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A caller's connection, not in autocommit: statements open a transaction."""
    with psycopg.connect(dsn) as c:
        yield c
        c.rollback()


# -- start and get ---------------------------------------------------------------------------


def test_start_then_get_returns_the_pending_record(app: Registry, db: Db) -> None:
    s = app.saga
    before = db.now()
    s.start("tx-1", app.debit, TransferInput(10, "bob"), state=Account(100))
    after = db.now()

    r = s.get("tx-1")
    assert isinstance(r, Instance)
    assert isinstance(r.id, int)
    assert r.name == "transfer"
    assert r.instance == "tx-1"
    assert r.status is Status.PENDING
    assert r.step == "debit"
    assert r.input == TransferInput(10, "bob")
    assert r.state == Account(100)
    assert r.attempts == 0
    assert r.error is None
    assert r.runner_id is None
    assert not r.done
    for moment in (r.run_after, r.created_at, r.updated_at):
        assert moment.tzinfo is not None
        assert moment.utcoffset() is not None
        assert before <= moment <= after  # the database's clock
    assert r.run_after == r.created_at  # no delay: due at once
    assert s.get_state("tx-1") == Account(100)


def test_start_without_state_or_input(app: Registry) -> None:
    s = app.saga

    @s.step
    def bare(input, state):  # type: ignore[no-untyped-def]  # unannotated: plain JSON
        pass

    s.start("bare-1", bare)
    r = s.get("bare-1")
    assert r.input is None
    assert r.state is None
    assert s.get_state("bare-1") is None
    s.start("bare-2", bare, {"a": [1, 2]}, {"n": 1})
    assert s.get("bare-2").input == {"a": [1, 2]}
    assert s.get_state("bare-2") == {"n": 1}


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [(2.5, 2.5), (30, 30.0), (0, 0.0), (timedelta(minutes=5, microseconds=250), 300.00025),
     (timedelta(days=2), 172800.0)],
)
def test_start_delay_sets_run_after_by_the_database_clock(
    app: Registry, db: Db, delay: float | timedelta, seconds: float
) -> None:
    before = db.now()
    app.saga.start("later", app.debit, TransferInput(1, "x"), delay=delay)
    r = app.saga.get("later")
    # created_at and run_after both come from now() of the inserting transaction
    assert r.run_after - r.created_at == timedelta(seconds=seconds)
    assert r.created_at >= before


@pytest.mark.parametrize("how", ["object", "name", "function"])
def test_start_takes_the_step_as_object_name_or_function(app: Registry, how: str) -> None:
    ref: object = {"object": app.credit, "name": "credit", "function": app.credit.fn}[how]
    app.saga.start("by-" + how, ref, TransferInput(3, "ann"))  # type: ignore[arg-type]
    assert app.saga.get("by-" + how).step == "credit"


def test_duplicate_start_raises_and_keeps_the_first(app: Registry) -> None:
    s = app.saga
    s.start("dup", app.debit, TransferInput(1, "a"))
    with pytest.raises(DuplicateSaga, match="dup"):
        s.start("dup", app.credit, TransferInput(2, "b"))
    r = s.get("dup")
    assert r.step == "debit"
    assert r.input == TransferInput(1, "a")


def test_same_instance_id_under_two_saga_names(app: Registry, dsn: str, schema: str) -> None:
    app.saga.start("shared-id", app.debit, TransferInput(1, "a"))
    with Saga("other", dsn, schema=schema) as other:

        @other.step
        def only(input: int) -> None:
            pass

        other.start("shared-id", only, 5)
        assert other.get("shared-id").input == 5
        assert app.saga.get("shared-id").step == "debit"


def test_get_and_get_state_of_unknown_instance(app: Registry) -> None:
    with pytest.raises(SagaNotFound, match="nope"):
        app.saga.get("nope")
    with pytest.raises(SagaNotFound):
        app.saga.get_state("nope")
    with pytest.raises(LookupError):
        app.saga.get("nope")
    assert issubclass(SagaNotFound, SagaException)


# -- call ------------------------------------------------------------------------------------


def test_call_on_pending_replaces_step_and_input(app: Registry, db: Db) -> None:
    s = app.saga
    s.start("c-1", app.debit, TransferInput(1, "a"), state=Account(7), delay=3600)
    db.execute("UPDATE {s}.instance SET attempts = 3, error = 'boom'"  # as after failed attempts
               " WHERE instance_id = 'c-1'")

    s.call("c-1", app.webhook, Confirmation(True))
    r = s.get("c-1")
    assert r.status is Status.PENDING
    assert r.step == "webhook"
    assert r.input == Confirmation(True)
    assert r.state == Account(7)  # call never touches the state
    assert r.attempts == 0
    assert r.error is None
    assert r.run_after == r.updated_at  # delay=None: due at once (it was an hour away)
    assert r.updated_at >= r.created_at

    # A second call before the first one's step has run is refused: the first stands.
    with pytest.raises(ConcurrencyException, match="earlier call whose step has not finished"):
        s.call("c-1", "credit", TransferInput(9, "z"))
    assert s.get("c-1").input == Confirmation(True)
    db.execute("UPDATE {s}.instance SET called = false")  # as once the webhook step has run

    s.call("c-1", "credit", TransferInput(9, "z"), delay=timedelta(seconds=90))
    r = s.get("c-1")
    assert r.step == "credit"
    assert r.input == TransferInput(9, "z")
    assert r.run_after - r.updated_at == timedelta(seconds=90)
    db.execute("UPDATE {s}.instance SET called = false")
    s.call("c-1", app.debit.fn, TransferInput(1, "f"), delay=1.5)
    r = s.get("c-1")
    assert r.step == "debit"
    assert r.run_after - r.updated_at == timedelta(seconds=1.5)


def test_call_on_unknown_instance(app: Registry) -> None:
    with pytest.raises(SagaNotFound, match="ghost"):
        app.saga.call("ghost", app.webhook, Confirmation(True))


@pytest.mark.parametrize("status", [Status.RUNNING, Status.COMPLETE, Status.ERROR])
def test_call_on_a_row_that_is_not_pending(
    app: Registry, db: Db, status: Status
) -> None:
    s = app.saga
    s.start("busy", app.debit, TransferInput(1, "a"))
    db.set_status("busy", status, runner_id="r-1" if status == 1 else None, attempts=1)
    with pytest.raises(ConcurrencyException, match=status.name):
        s.call("busy", app.webhook, Confirmation(False))
    r = s.get("busy")  # unchanged
    assert r.status is status
    assert r.step == "debit"
    assert r.attempts == 1


# -- the transactional outbox (conn=) --------------------------------------------------------


def test_start_in_a_rolled_back_transaction_leaves_no_saga(
    app: Registry, conn: psycopg.Connection[Any]
) -> None:
    app.saga.start("outbox", app.debit, TransferInput(1, "a"), conn=conn)
    assert conn.info.transaction_status == TransactionStatus.INTRANS
    assert app.saga.get("outbox", conn=conn).step == "debit"  # visible inside
    conn.rollback()
    with pytest.raises(SagaNotFound):
        app.saga.get("outbox")


def test_start_is_invisible_until_the_caller_commits(
    app: Registry, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("SELECT 1")  # the caller's own work opens the transaction
    app.saga.start("outbox", app.debit, TransferInput(1, "a"), conn=conn)
    assert conn.info.transaction_status == TransactionStatus.INTRANS  # not committed by us
    with pytest.raises(SagaNotFound):
        app.saga.get("outbox")  # another connection (the saga's pool)
    conn.commit()
    assert app.saga.get("outbox").input == TransferInput(1, "a")


def test_duplicate_start_does_not_abort_the_callers_transaction(
    app: Registry, conn: psycopg.Connection[Any]
) -> None:
    app.saga.start("dup", app.debit, TransferInput(1, "a"))
    conn.execute("CREATE TEMP TABLE mine (x int) ON COMMIT DROP")
    conn.execute("INSERT INTO mine VALUES (1)")
    with pytest.raises(DuplicateSaga):
        app.saga.start("dup", app.debit, TransferInput(2, "b"), conn=conn)
    assert conn.info.transaction_status == TransactionStatus.INTRANS  # not INERROR
    row = conn.execute("SELECT count(*) FROM mine").fetchone()
    assert row == (1,)
    app.saga.start("dup-2", app.debit, TransferInput(3, "c"), conn=conn)
    conn.commit()
    assert app.saga.get("dup").input == TransferInput(1, "a")
    assert app.saga.get("dup-2").input == TransferInput(3, "c")


def test_call_with_conn_joins_the_callers_transaction(
    app: Registry, conn: psycopg.Connection[Any]
) -> None:
    s = app.saga
    s.start("c", app.debit, TransferInput(1, "a"))
    s.call("c", app.webhook, Confirmation(True), conn=conn)
    assert conn.info.transaction_status == TransactionStatus.INTRANS
    assert s.get("c").step == "debit"  # not yet committed
    conn.rollback()
    assert s.get("c").step == "debit"

    s.call("c", app.webhook, Confirmation(True), conn=conn)
    conn.commit()
    assert s.get("c").step == "webhook"


def test_call_errors_with_conn_do_not_abort_the_callers_transaction(
    app: Registry, conn: psycopg.Connection[Any], db: Db
) -> None:
    s = app.saga
    s.start("done", app.debit, TransferInput(1, "a"))
    db.set_status("done", Status.COMPLETE)
    conn.execute("SELECT 1")
    with pytest.raises(SagaNotFound):
        s.call("ghost", app.webhook, Confirmation(True), conn=conn)
    with pytest.raises(ConcurrencyException, match="COMPLETE"):
        s.call("done", app.webhook, Confirmation(True), conn=conn)
    assert conn.info.transaction_status == TransactionStatus.INTRANS
    assert conn.execute("SELECT 2").fetchone() == (2,)
    s.start("after", app.debit, TransferInput(1, "a"), conn=conn)
    conn.commit()
    assert s.get("after").status is Status.PENDING


def test_autocommit_connection(app: Registry, dsn: str) -> None:
    s = app.saga
    with psycopg.connect(dsn, autocommit=True) as c:
        s.start("auto", app.debit, TransferInput(1, "a"), conn=c)
        assert c.info.transaction_status == TransactionStatus.IDLE
        assert s.get("auto").step == "debit"  # visible at once from another connection
        s.call("auto", app.credit, TransferInput(2, "b"), conn=c)
        assert s.get("auto").step == "credit"
        assert s.get("auto", conn=c).input == TransferInput(2, "b")
        assert s.get_state("auto", conn=c) is None
        with pytest.raises(DuplicateSaga):
            s.start("auto", app.debit, TransferInput(1, "a"), conn=c)
        assert c.info.transaction_status == TransactionStatus.IDLE


# -- pools and DSNs --------------------------------------------------------------------------


def use(s: Saga, instance: str, input: int) -> None:
    """Migrate, add a step `one`, start *instance* with *input* and read it back."""
    s.init_db()

    @s.step
    def one(input: int) -> None:
        pass

    s.start(instance, one, input)
    assert s.get(instance).input == input


def test_saga_with_a_pool_of_the_callers(dsn: str, schema: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=2, open=True) as pool:
        s = Saga("pooled", pool=pool, schema=schema)
        assert s.pool is pool
        assert s.dsn is None
        use(s, "p", 1)
        s.close()
        assert not pool.closed  # the caller's pool stays open
        with pool.connection() as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        assert s.get("p").step == "one"  # and the saga can still use it
        with s:
            pass
        assert not pool.closed


def test_saga_dsn_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, dsn: str, schema: str
) -> None:
    monkeypatch.setenv("SAGA_DSN", dsn)
    with Saga("env", schema=schema) as s:
        assert s.dsn is None
        assert not s.has_pool  # nothing read or opened before first use
        use(s, "e", 7)


def test_context_manager_closes_its_own_pool(dsn: str, schema: str) -> None:
    with Saga("ctx", dsn, schema=schema) as s:
        s.init_db()
        pool = s.pool
        assert not pool.closed
    assert pool.closed
    assert not s.has_pool
    s.close()  # idempotent


def test_reprs(dsn: str, schema: str) -> None:
    s = Saga("transfer_fund", dsn, schema=schema)
    assert repr(s) == f"<Saga 'transfer_fund' schema={schema!r} steps=0>"

    @s.step
    def debit(input: object) -> None:
        pass

    assert isinstance(debit, Step)
    assert repr(debit) == "<Step 'transfer_fund'.debit>"
    assert repr(s) == f"<Saga 'transfer_fund' schema={schema!r} steps=1>"
    assert debit.name == "debit"
    assert debit.__name__ == "debit"  # functools.update_wrapper


# -- public names ----------------------------------------------------------------------------


def test_status_values() -> None:
    assert [(s.name, s.value) for s in Status] == [
        ("PENDING", 0), ("RUNNING", 1), ("COMPLETE", 2), ("ERROR", 3), ("CANCELLED", 4)
    ]
    assert Status(2) is Status.COMPLETE
    assert Status.ERROR == 3
    assert saga.Status is Status


def test_instance_is_frozen(app: Registry) -> None:
    app.saga.start("f", app.debit, TransferInput(1, "a"))
    r = app.saga.get("f")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status = Status.COMPLETE  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.attempts = 5  # type: ignore[misc]
    assert r.status is Status.PENDING
    assert dataclasses.replace(r, status=Status.COMPLETE).done


def test_public_names_are_importable() -> None:
    for name in ("Saga", "SagaError", "ConcurrencyException", "DuplicateSaga",
                 "SagaNotFound", "SagaException", "Status", "Instance"):
        assert name in saga.__all__
        assert hasattr(saga, name)
    for error in (saga.SagaError, ConcurrencyException, DuplicateSaga, SagaNotFound):
        assert error.__module__ == "saga"  # tracebacks show saga.X
    assert saga.__all__ == sorted(saga.__all__)
