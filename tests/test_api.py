"""The blocking API, through the public interface: start, call, get, get_state, and
the checks at the call site; the transactional outbox (`conn=`); pools and DSNs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

import saga
from saga import (
    ConcurrencyException,
    DuplicateSaga,
    Instance,
    JsonCodec,
    Saga,
    SagaException,
    SagaNotFound,
    Status,
    Step,
)


@dataclass
class TransferInput:
    amount: int
    to: str


@dataclass
class Account:
    balance: int


@dataclass
class Confirmation:
    ok: bool


class Registry:
    """A saga with three steps, the shape the tests use."""

    def __init__(self, s: Saga) -> None:
        self.saga = s

        @s.step
        def debit(input: TransferInput, state: Account | None) -> None:
            pass

        @s.step
        def credit(input: TransferInput, state: Account | None) -> None:
            pass

        @s.step
        def webhook(input: Confirmation, state: Account | None) -> None:
            pass

        self.debit, self.credit, self.webhook = debit, credit, webhook


@pytest.fixture
def app(dsn: str, schema: str) -> Iterator[Registry]:
    s = Saga("transfer", dsn, schema=schema)
    s.init_db()
    try:
        yield Registry(s)
    finally:
        s.close()


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A caller's connection, not in autocommit: statements open a transaction."""
    with psycopg.connect(dsn) as c:
        yield c
        c.rollback()


def db_now(dsn: str) -> datetime:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def set_status(dsn: str, schema: str, instance: str, status: Status,
               runner_id: str | None = None, attempts: int | None = None) -> None:
    query = sql.SQL(
        "UPDATE {}.instance SET status = %s, runner_id = %s, attempts = coalesce(%s, attempts)"
        " WHERE instance_id = %s"
    ).format(sql.Identifier(schema))
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute(query, (int(status), runner_id, attempts, instance)).rowcount == 1


# -- start and get ---------------------------------------------------------------------------


def test_start_then_get_returns_the_pending_record(app: Registry, dsn: str) -> None:
    s = app.saga
    before = db_now(dsn)
    s.start("tx-1", app.debit, TransferInput(10, "bob"), state=Account(100))
    after = db_now(dsn)

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
    app: Registry, dsn: str, delay: float | timedelta, seconds: float
) -> None:
    before = db_now(dsn)
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


def test_call_on_pending_replaces_step_and_input(app: Registry, dsn: str, schema: str) -> None:
    s = app.saga
    s.start("c-1", app.debit, TransferInput(1, "a"), state=Account(7), delay=3600)
    with psycopg.connect(dsn, autocommit=True) as c:  # as after failed attempts
        c.execute(sql.SQL("UPDATE {}.instance SET attempts = 3, error = 'boom'"
                          " WHERE instance_id = 'c-1'").format(sql.Identifier(schema)))

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

    s.call("c-1", "credit", TransferInput(9, "z"), delay=timedelta(seconds=90))
    r = s.get("c-1")
    assert r.step == "credit"
    assert r.input == TransferInput(9, "z")
    assert r.run_after - r.updated_at == timedelta(seconds=90)
    s.call("c-1", app.debit.fn, TransferInput(1, "f"), delay=1.5)
    r = s.get("c-1")
    assert r.step == "debit"
    assert r.run_after - r.updated_at == timedelta(seconds=1.5)


def test_call_on_unknown_instance(app: Registry) -> None:
    with pytest.raises(SagaNotFound, match="ghost"):
        app.saga.call("ghost", app.webhook, Confirmation(True))


@pytest.mark.parametrize("status", [Status.RUNNING, Status.COMPLETE, Status.ERROR])
def test_call_on_a_row_that_is_not_pending(
    app: Registry, dsn: str, schema: str, status: Status
) -> None:
    s = app.saga
    s.start("busy", app.debit, TransferInput(1, "a"))
    set_status(dsn, schema, "busy", status, runner_id="r-1" if status == 1 else None,
               attempts=1)
    with pytest.raises(ConcurrencyException, match=status.name):
        s.call("busy", app.webhook, Confirmation(False))
    r = s.get("busy")  # unchanged
    assert r.status is status
    assert r.step == "debit"
    assert r.attempts == 1


# -- checks at the call site -----------------------------------------------------------------


def test_unknown_step_name_lists_the_registered_steps(app: Registry) -> None:
    with pytest.raises(ValueError, match=r"unknown step 'refund'.*credit, debit, webhook"):
        app.saga.start("x", "refund", TransferInput(1, "a"))
    app.saga.start("x", app.debit, TransferInput(1, "a"))
    with pytest.raises(ValueError, match="unknown step 'refund'"):
        app.saga.call("x", "refund", TransferInput(1, "a"))


def test_step_of_another_saga_is_rejected(app: Registry, dsn: str, schema: str) -> None:
    other = Saga("other", dsn, schema=schema)

    @other.step
    def foreign(input: object) -> None:
        pass

    with pytest.raises(ValueError, match=r"'foreign' is registered on saga 'other'"):
        app.saga.start("x", foreign, 1)
    with pytest.raises(ValueError, match="not a step of saga 'transfer'"):
        app.saga.start("x", foreign.fn, 1)
    app.saga.start("x", app.debit, TransferInput(1, "a"))
    with pytest.raises(ValueError, match="registered on saga 'other'"):
        app.saga.call("x", foreign, 1)
    other.close()
    assert not other.has_pool  # never connected: the checks ran before any database use


def test_plain_function_is_rejected(app: Registry) -> None:
    def undecorated(input: object) -> None:
        pass

    with pytest.raises(ValueError, match=r"not a step of saga 'transfer'.*@step"):
        app.saga.start("x", undecorated, 1)  # type: ignore[arg-type]
    with pytest.raises(SagaNotFound):
        app.saga.get("x")


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (object(), "not JSON serializable"),
        (float("nan"), "nan"),
        ({"n": float("inf")}, "inf"),
        ("nul\x00", "NUL"),
        ({"deep": ["nul\x00"]}, "NUL"),
    ],
)
def test_unencodable_input_or_state_is_a_type_error(
    app: Registry, value: object, pattern: str
) -> None:
    s = app.saga

    @s.step
    def loose(input, state):  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(TypeError, match=pattern):
        s.start("x", loose, value)
    with pytest.raises(TypeError, match=pattern):
        s.start("x", loose, 1, state=value)
    s.start("x", loose, 1)
    with pytest.raises(TypeError, match=pattern):
        s.call("x", loose, value)
    assert s.get("x").input == 1


def test_a_set_inside_a_dict_is_stored_as_a_list(app: Registry) -> None:
    s = app.saga

    @s.step
    def loose(input, state):  # type: ignore[no-untyped-def]
        pass

    s.start("set", loose, {"ids": {3}, "more": frozenset({"a"})})
    assert s.get("set").input == {"ids": [3], "more": ["a"]}  # unannotated: plain JSON


def test_literal_backslash_u0000_input_is_fine(app: Registry) -> None:
    s = app.saga

    @s.step
    def loose(input, state):  # type: ignore[no-untyped-def]
        pass

    s.start("bs", loose, {"text": "\\u0000"}, state="\\\\u0000")
    assert s.get("bs").input == {"text": "\\u0000"}
    assert s.get_state("bs") == "\\\\u0000"


@pytest.mark.parametrize(
    "value",
    [{"amount": 1}, {"amount": 1, "to": "a", "cc": "b"}, TransferInput("ten", "a"),  # type: ignore[arg-type]
     Account(1), None, 5],
)
def test_input_that_does_not_fit_the_step_annotation(app: Registry, value: object) -> None:
    with pytest.raises(TypeError, match="input does not fit step 'debit'") as info:
        app.saga.start("x", app.debit, value)
    assert "$" in str(info.value)  # the codec's path says where
    with pytest.raises(SagaNotFound):
        app.saga.get("x")


def test_input_check_names_the_bad_field(app: Registry) -> None:
    with pytest.raises(TypeError, match=r"\$\.amount"):
        app.saga.start("x", app.debit, TransferInput("ten", "a"))  # type: ignore[arg-type]
    app.saga.start("x", app.debit, TransferInput(1, "a"))
    with pytest.raises(TypeError, match="input does not fit step 'webhook'"):
        app.saga.call("x", app.webhook, TransferInput(1, "a"))


@pytest.mark.parametrize(
    ("instance", "error", "pattern"),
    [
        ("", ValueError, "instance must be 1 to 512 characters"),
        ("x" * 513, ValueError, r"instance must be 1 to 512 characters.*\.\.\."),
        ("a\x00b", ValueError, "instance must be .* without NUL"),
        (42, TypeError, "instance must be a string, got int"),
        (None, TypeError, "instance must be a string, got NoneType"),
        (b"bytes", TypeError, "instance must be a string, got bytes"),
    ],
)
def test_bad_instance_ids(
    app: Registry, instance: object, error: type[Exception], pattern: str
) -> None:
    s = app.saga
    for call in (
        lambda: s.start(instance, app.debit, TransferInput(1, "a")),  # type: ignore[arg-type]
        lambda: s.call(instance, app.debit, TransferInput(1, "a")),  # type: ignore[arg-type]
        lambda: s.get(instance),  # type: ignore[arg-type]
        lambda: s.get_state(instance),  # type: ignore[arg-type]
    ):
        with pytest.raises(error, match=pattern):
            call()


def test_longest_instance_id_is_accepted(app: Registry) -> None:
    long_id = "é" * 512
    app.saga.start(long_id, app.debit, TransferInput(1, "a"))
    assert app.saga.get(long_id).instance == long_id


@pytest.mark.parametrize(
    ("delay", "error"),
    [(-1, ValueError), (-0.001, ValueError), (float("nan"), ValueError),
     (float("inf"), ValueError), (timedelta(seconds=-5), ValueError),
     ("10", TypeError), (True, TypeError)],
)
def test_bad_delay(app: Registry, delay: object, error: type[Exception]) -> None:
    s = app.saga
    with pytest.raises(error, match="delay"):
        s.start("d", app.debit, TransferInput(1, "a"), delay=delay)  # type: ignore[arg-type]
    s.start("d", app.debit, TransferInput(1, "a"))
    with pytest.raises(error, match="delay"):
        s.call("d", app.debit, TransferInput(1, "a"), delay=delay)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"schema": "x; drop table y"}, ValueError, "schema must be a lowercase identifier"),
        ({"schema": "Bad-Name"}, ValueError, "schema must be .*'Bad-Name'"),
        ({"schema": ""}, ValueError, "schema"),
        ({"schema": "a" * 49}, ValueError, "at most 48"),
        ({"max_attempts": 0}, ValueError, "max_attempts must be an integer >= 1, got 0"),
        ({"max_attempts": -3}, ValueError, "max_attempts"),
        ({"max_attempts": 2.5}, ValueError, "max_attempts"),
        ({"max_attempts": True}, ValueError, "max_attempts"),
        ({"codec": object()}, TypeError, "codec must have encode"),
        ({"backoff_base": 0}, ValueError, "backoff_base"),
        ({"backoff_base": 10, "backoff_max": 5}, ValueError, "backoff_max"),
    ],
)
def test_bad_saga_arguments(kwargs: dict[str, Any], error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        Saga("s", "postgresql://unused", **kwargs)


def test_a_codec_class_instead_of_an_instance_is_rejected() -> None:
    # Saga(..., codec=PickleCodec) without the parentheses: the class has encode and
    # decode, so a Protocol isinstance check passes it; start() would then fail with
    # "encode() missing 1 required positional argument".
    with pytest.raises(TypeError, match="codec"):
        Saga("s", "postgresql://unused", codec=JsonCodec)  # type: ignore[arg-type]


def test_pool_must_be_a_connection_pool() -> None:
    with pytest.raises(TypeError, match=r"pool must be a psycopg_pool\.ConnectionPool"):
        Saga("s", pool="postgresql://x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "error"), [("", ValueError), ("n" * 129, ValueError), (None, TypeError)]
)
def test_bad_saga_name(name: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="name"):
        Saga(name, "postgresql://unused")  # type: ignore[arg-type]


def test_dsn_and_pool_together_are_rejected(dsn: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=1, open=True) as pool, pytest.raises(
        ValueError, match="either dsn or pool"
    ):
        Saga("s", dsn, pool=pool)


def test_dsn_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="dsn must be a string"):
        Saga("s", 5432)  # type: ignore[arg-type]


def test_duplicate_step_names_are_rejected() -> None:
    s = Saga("s", "postgresql://unused")

    @s.step
    def same(input: object) -> None:
        pass

    def again(input: object) -> None:
        pass

    again.__name__ = "same"
    with pytest.raises(ValueError, match="already has a step named 'same'"):
        s.step(again)
    assert s.steps["same"].fn is same.fn


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
    app: Registry, conn: psycopg.Connection[Any], dsn: str, schema: str
) -> None:
    s = app.saga
    s.start("done", app.debit, TransferInput(1, "a"))
    set_status(dsn, schema, "done", Status.COMPLETE)
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


def test_conn_must_be_a_psycopg_connection(app: Registry) -> None:
    with pytest.raises(TypeError, match=r"conn must be a psycopg\.Connection"):
        app.saga.start("x", app.debit, TransferInput(1, "a"), conn="dbname=x")  # type: ignore[arg-type]


# -- pools and DSNs --------------------------------------------------------------------------


def test_saga_with_a_pool_of_the_callers(dsn: str, schema: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=2, open=True) as pool:
        s = Saga("pooled", pool=pool, schema=schema)
        assert s.pool is pool
        assert s.dsn is None
        s.init_db()

        @s.step
        def one(input: int) -> None:
            pass

        s.start("p", one, 1)
        assert s.get("p").input == 1
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
        s.init_db()

        @s.step
        def one(input: int) -> None:
            pass

        s.start("e", one, 7)
        assert s.get("e").input == 7


def test_saga_without_any_database_fails_on_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SAGA_DSN", raising=False)
    s = Saga("nodb")  # constructing is fine: SAGA_DSN may be set later

    @s.step
    def one(input: int) -> None:
        pass

    for use in (s.init_db, lambda: s.get("x"), lambda: s.start("x", one, 1)):
        with pytest.raises(ValueError, match=r"saga 'nodb' has no database.*SAGA_DSN"):
            use()
    monkeypatch.setenv("SAGA_DSN", "")
    with pytest.raises(ValueError, match="SAGA_DSN"):
        s.get("x")


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
        ("PENDING", 0), ("RUNNING", 1), ("COMPLETE", 2), ("ERROR", 3)
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


def test_state_that_does_not_fit_the_step_annotation(app: Registry) -> None:
    # As for input: a state the first step cannot read would only fail later, in a
    # worker (status ERROR, "cannot run this row"), instead of at the call site.
    with pytest.raises(TypeError, match=r"state.*'debit'"):
        app.saga.start("x", app.debit, TransferInput(1, "a"), state={"bogus": 1})
    with pytest.raises(SagaNotFound):
        app.saga.get("x")
