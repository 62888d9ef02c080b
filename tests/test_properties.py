"""Property tests (hypothesis) of the codec and of the API's input checks: what round-trips,
what is refused at the call site (before any database work), names of every kind, and
inputs of 10 MB."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from saga import DuplicateSaga, JsonCodec, Saga, Status
from saga.core import MAX_INSTANCE, MAX_NAME
from saga.sqlfiles import check_schema, render
from saga.steps import MAX_DELAY, delay_seconds

CODEC = JsonCodec()
NOWHERE = "postgresql://nobody@127.0.0.1:1/never"  # a saga that must fail before connecting

# -- strategies ---------------------------------------------------------------------------

# Text a jsonb column can hold: no NUL, no lone surrogates.
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | finite | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=30,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float


@dataclasses.dataclass
class Line:
    sku: str
    qty: int
    price: Decimal
    color: Color


@dataclasses.dataclass
class Order:
    id: uuid.UUID
    at: dt.datetime
    day: dt.date
    lines: list[Line]
    tags: set[str]
    where: tuple[int, str]
    path: list[Point]
    extra: dict[str, list[int]]
    note: str | None
    kind: Literal["retail", "wholesale"]
    blob: bytes


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=4)
lines = st.builds(Line, sku=texts, qty=st.integers(-(2**40), 2**40), price=decimals,
                  color=st.sampled_from(Color))
# Fixed offsets: the codec keeps an aware datetime's offset, not its zone's name (and a
# named zone's wall time in a DST gap or fold never compares equal across zones).
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes)))
orders = st.builds(
    Order, id=st.uuids(), at=st.datetimes(timezones=st.none() | offsets),
    day=st.dates(), lines=st.lists(lines, max_size=3), tags=st.sets(texts, max_size=3),
    where=st.tuples(st.integers(), texts), path=st.lists(st.builds(Point, finite, finite),
                                                          max_size=3),
    extra=st.dictionaries(texts, st.lists(st.integers(), max_size=3), max_size=3),
    note=st.none() | texts, kind=st.sampled_from(["retail", "wholesale"]),
    blob=st.binary(max_size=20),
)


class Opaque:
    """Not JSON, and not a dataclass."""


# Leaves JSON cannot hold (a NUL or a lone surrogate: jsonb cannot).
unencodable = st.sampled_from([
    Opaque(), object(), float("nan"), float("inf"), -float("inf"), "a\x00b", "\ud800",
    {("tuple", "key"): 1}, lambda: None, 1j, ...])


def with_leaf(value: object, leaf: object, where: int) -> object:
    """*value* with *leaf* put somewhere inside it (inside a list at least)."""
    if isinstance(value, dict) and value:
        key = sorted(value)[where % len(value)]
        return {**value, key: with_leaf(value[key], leaf, where // 2)}
    if isinstance(value, list) and value:
        i = where % len(value)
        return [*value[:i], with_leaf(value[i], leaf, where // 2), *value[i + 1:]]
    return [value, leaf]


def offline_saga() -> tuple[Saga, Any, Any]:
    """A saga whose database is never reached, with an untyped and a typed step."""
    saga = Saga("offline", NOWHERE)

    @saga.step
    def anything(input: object) -> None: ...

    @saga.step
    def typed(input: Order, state: Point | None) -> None: ...

    return saga, anything, typed


# -- the codec ----------------------------------------------------------------------------


@given(json_values)
def test_json_values_round_trip(value: object) -> None:
    text = CODEC.encode(value)
    json.loads(text)
    assert CODEC.decode(text) == value
    assert CODEC.decode(text, Any) == value


@given(orders)
def test_dataclasses_of_nested_types_round_trip_through_their_annotation(order: Order) -> None:
    assert CODEC.decode(CODEC.encode(order), Order) == order


@given(st.lists(orders, max_size=2), st.dictionaries(texts, st.builds(Point, finite, finite)))
def test_containers_of_dataclasses_round_trip(many: list[Order],
                                              points: dict[str, Point]) -> None:
    assert CODEC.decode(CODEC.encode(many), list[Order]) == many
    assert CODEC.decode(CODEC.encode(points), dict[str, Point]) == points


@given(json_values, unencodable, st.integers(0, 1000))
def test_an_unencodable_value_anywhere_is_a_type_error_at_the_call_site(
    value: object, leaf: object, where: int
) -> None:
    bad = with_leaf(value, leaf, where)
    with pytest.raises(TypeError):
        CODEC.encode(bad)
    saga, anything, _ = offline_saga()
    with pytest.raises(TypeError):
        saga.start("i", anything, bad)  # refused before the database is reached
    with pytest.raises(TypeError):
        anything(bad)  # a continuation built in a step
    with pytest.raises(TypeError):
        saga.call("i", "anything", bad)


@given(json_values)
def test_a_value_that_does_not_fit_the_annotation_is_a_type_error(value: object) -> None:
    assume(not (isinstance(value, dict) and set(value) == {"x", "y"}))  # might be a Point
    saga, _, typed = offline_saga()
    with pytest.raises(TypeError, match="input does not fit step 'typed'"):
        saga.start("i", typed, value)
    with pytest.raises(TypeError, match="does not fit step 'typed'"):
        typed(None, state=value if value is not None else [])


def test_a_circular_value_is_a_type_error() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="cannot encode"):
        CODEC.encode(loop)


# -- names, delays, schemas -----------------------------------------------------------------


invalid_ids = (st.just("")
               | st.builds(lambda a, b: f"{a}\x00{b}", st.text(), st.text())
               | st.builds(lambda a, b: f"{a}\udc80{b}", st.text(), st.text())
               | st.builds(lambda a, n: (a or "x") * n, st.text(max_size=3),
                           st.integers(MAX_INSTANCE + 1, 4 * MAX_INSTANCE))
               .filter(lambda t: len(t) > MAX_INSTANCE))


@given(invalid_ids)
def test_invalid_instance_ids_are_refused_at_the_call_site(instance: str) -> None:
    """Empty, too long, holding NUL or a lone surrogate: a ValueError before any database
    work (the valid ones are the database test's, below)."""
    saga, anything, _ = offline_saga()
    for call in (lambda: saga.start(instance, anything, 1), lambda: saga.get(instance),
                 lambda: saga.call(instance, anything, 1), lambda: saga.cancel(instance)):
        with pytest.raises(ValueError, match="instance must be"):
            call()


@given(st.text(max_size=MAX_NAME + 20))
def test_saga_names_are_checked(name: str) -> None:
    valid = 1 <= len(name) <= MAX_NAME and "\x00" not in name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        valid = False
    if valid:
        assert Saga(name, NOWHERE).name == name
    else:
        with pytest.raises(ValueError, match="name must be"):
            Saga(name, NOWHERE)


@given(texts)
def test_unknown_step_names_are_value_errors(name: str) -> None:
    saga, _, _ = offline_saga()
    assume(name not in saga.steps)
    with pytest.raises(ValueError, match="unknown step"):
        saga.start("i", name, 1)
    with pytest.raises(ValueError, match="unknown step"):
        saga.call("i", name, 1)


@given(st.text(max_size=60))
def test_only_plain_lowercase_identifiers_are_schemas(name: str) -> None:
    plain = (0 < len(name) <= 48 and name[0] in "abcdefghijklmnopqrstuvwxyz_"
             and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in name))
    if plain:
        assert check_schema(name) == name
        assert render("{schema}.instance", name) == f'"{name}".instance'  # always quoted
    else:
        with pytest.raises(ValueError, match="schema must be a lowercase identifier"):
            check_schema(name)


@given(st.floats() | st.integers() | st.timedeltas())
def test_delays_are_finite_non_negative_and_bounded(delay: float | dt.timedelta) -> None:
    seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else float(delay)
    if 0 <= seconds <= MAX_DELAY:
        assert delay_seconds(delay) == seconds
    else:
        with pytest.raises(ValueError, match="delay must be"):
            delay_seconds(delay)


# -- through the database -----------------------------------------------------------------

HOSTILE = ["'; DROP TABLE instance; --", "%(name)s", "%s", "{schema}", "\\", "\"", "$1",
           "Robert'); DROP TABLE students;--", "\u202etxt.exe", "🔥" * 100, "a" * MAX_INSTANCE,
           " ", "\n", "NULL"]


@pytest.fixture
def typed_saga(make_saga: Callable[..., Saga]) -> Saga:
    saga = make_saga("props")

    @saga.step
    def keep(input: Order, state: Point | None) -> None: ...

    @saga.step
    def loose(input: object) -> object:
        return input

    return saga


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=orders, point=st.none() | st.builds(Point, finite, finite))
def test_typed_values_round_trip_through_jsonb(typed_saga: Saga, order: Order,
                                               point: Point | None) -> None:
    instance = uuid.uuid4().hex
    typed_saga.start(instance, "keep", order, state=point)
    row = typed_saga.get(instance)
    assert (row.input, row.state) == (order, point)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instance=st.sampled_from(HOSTILE) | texts.filter(lambda t: 0 < len(t) <= MAX_INSTANCE))
def test_any_valid_instance_id_is_stored_and_found_as_given(typed_saga: Saga,
                                                            instance: str) -> None:
    with contextlib.suppress(DuplicateSaga):  # ids repeat across examples
        typed_saga.start(instance, "loose", instance)
    row = typed_saga.get(instance)
    assert (row.instance, row.input) == (instance, instance)


@pytest.mark.parametrize("make", [
    pytest.param(lambda n: "x" * n, id="string"),
    pytest.param(lambda n: list(range(n // 8)), id="list", marks=pytest.mark.slow),
    pytest.param(lambda n: {f"k{i}": "v" * 90 for i in range(n // 100)}, id="object",
                 marks=pytest.mark.slow),
])
def test_ten_megabyte_inputs_run_end_to_end(typed_saga: Saga,
                                            make: Callable[[int], object]) -> None:
    big = make(10 * 1024 * 1024)
    assert len(CODEC.encode(big)) >= 10 * 1024 * 1024 * 0.9
    began = time.monotonic()
    typed_saga.start("big", "loose", big)
    stats = typed_saga.run(workers=1, drain=True)
    row = typed_saga.get("big")
    assert (stats.completed, row.status) == (1, Status.COMPLETE)
    assert row.input == big
    assert row.state == big  # the step returned it: its final state
    assert time.monotonic() - began < 60
