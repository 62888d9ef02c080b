"""The API misused: bad steps, values, ids, delays and Saga arguments fail at the call site."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from saga import JsonCodec, Saga, SagaNotFound
from tests.helpers import Account, Registry, TransferInput

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

def test_state_that_does_not_fit_the_step_annotation(app: Registry) -> None:
    # As for input: a state the first step cannot read would only fail later, in a
    # worker (status ERROR, "cannot run this row"), instead of at the call site.
    with pytest.raises(TypeError, match=r"state.*'debit'"):
        app.saga.start("x", app.debit, TransferInput(1, "a"), state={"bogus": 1})
    with pytest.raises(SagaNotFound):
        app.saga.get("x")


@pytest.mark.parametrize(
    ("instance", "error", "pattern"),
    [
        ("", ValueError, "instance must be 1 to 512 characters"),
        ("x" * 513, ValueError, r"instance must be 1 to 512 characters.*\.\.\."),
        ("a\x00b", ValueError, "instance must be .* without NUL"),
        ("lone \udc80", ValueError, "instance must be valid Unicode text"),
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
     (timedelta(days=365 * 101), ValueError), (1e300, ValueError),
     ("10", TypeError), (True, TypeError)],
)
def test_bad_delay(app: Registry, delay: object, error: type[Exception]) -> None:
    s = app.saga
    with pytest.raises(error, match="delay"):
        s.start("d", app.debit, TransferInput(1, "a"), delay=delay)  # type: ignore[arg-type]
    s.start("d", app.debit, TransferInput(1, "a"))
    with pytest.raises(error, match="delay"):
        s.call("d", app.debit, TransferInput(1, "a"), delay=delay)  # type: ignore[arg-type]


def test_conn_must_be_a_psycopg_connection(app: Registry) -> None:
    with pytest.raises(TypeError, match=r"conn must be a psycopg\.Connection"):
        app.saga.start("x", app.debit, TransferInput(1, "a"), conn="dbname=x")  # type: ignore[arg-type]


# -- the constructor, @step and the first use ------------------------------------------------


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


def test_step_of_a_same_named_saga_names_both_schemas(app: Registry, dsn: str,
                                                      schema: str) -> None:
    twin = Saga(app.saga.name, dsn, schema=f"{schema}_twin")

    @twin.step
    def debit(input: object) -> None:
        pass

    expected = (f"step 'debit' is registered on saga {app.saga.name!r} in schema "
                f"'{schema}_twin', not on saga {app.saga.name!r} in schema {schema!r}")
    with pytest.raises(ValueError, match=re.escape(expected)):
        app.saga.start("x", debit, 1)
    same = Saga(app.saga.name, dsn, schema=schema)
    with pytest.raises(ValueError, match="another Saga object of the same name and schema"):
        app.saga.start("x", same.step(debit.fn), 1)
    twin.close()
    same.close()
