"""Step parameters get what their names say, wherever they stand; other names get the
value of their position; a signature that would give one value twice is refused."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pytest

from saga import Saga, Status
from saga.signatures import bind

VALUES = ("I", "S", "SET", "LOG")


def received(fn: Any) -> object:
    """What *fn* returns when called as a step with VALUES (and "CONN" if it wants it)."""
    return bind(fn, fn.__name__).call(fn, VALUES, "CONN")


def test_positional_form_of_the_original() -> None:
    def none() -> object:
        return ()

    def one(a: object) -> object:
        return (a,)

    def four(a: object, b: object, c: object, d: object) -> object:
        return (a, b, c, d)

    def seed(input: object, state: object, set_state: object) -> object:
        return (input, state, set_state)

    def rest(a: object, *more: object) -> object:
        return (a, *more)

    def extra(a: object, b: object, c: object, d: object, e: object = "E") -> object:
        return (a, b, c, d, e)

    assert received(none) == ()
    assert received(one) == ("I",)
    assert received(four) == VALUES
    assert received(seed) == ("I", "S", "SET")
    assert received(rest) == VALUES
    assert received(extra) == (*VALUES, "E")


def test_known_names_get_their_value_wherever_they_stand() -> None:
    def hello(input: object, logger: object) -> object:  # the README's "as many as needed"
        return (input, logger)

    def swapped(logger: object, input: object) -> object:
        return (logger, input)

    def unknown_then_known(data: object, set_state: object) -> object:
        return (data, set_state)

    def keyword(input: object, *, logger: object, conn: object) -> object:
        return (input, logger, conn)

    def position_one(logger: object, st: object) -> object:  # st stands where state goes
        return (logger, st)

    assert received(hello) == ("I", "LOG")
    assert received(swapped) == ("LOG", "I")
    assert received(unknown_then_known) == ("I", "SET")
    assert received(keyword) == ("I", "LOG", "CONN")
    assert received(position_one) == ("LOG", "S")
    assert bind(hello, "hello").slots == ("input", "", "", "logger")


@pytest.mark.parametrize(
    ("source", "pattern"),
    [
        ("def s(state, x): pass",
         r"'state' and 'x' would both receive the state.*`def s\(input, state\)`"),
        ("def s(logger, a, b, c): pass",
         r"'logger' and 'c' would both receive the logger.*`def s\(input, state, set_state, "
         r"logger\)`"),
        ("def s(input, *, input2, state, conn, logger=None): pass",
         r"keyword-only parameter 'input2' needs a default"),
        ("def s(a, *, input): pass", r"'a' and 'input' would both receive the input"),
        ("def s(logger, *rest): pass", r"with \*rest, the parameters before it"),
        ("def s(conn, input): pass", r"declare `conn` after the other parameters"),
        ("def s(a, b, c, d, e): pass", r"more than 4 positional parameters.*'e' has no default"),
    ],
)
def test_signatures_that_cannot_work_are_refused(source: str, pattern: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(TypeError, match=pattern):
        bind(namespace["s"], "s")


@dataclass
class Order:
    item: str


def test_a_step_that_names_its_parameters_runs(saga: Saga) -> None:
    """The bug: `def hello(input, logger)` got the state as its logger, and failed every
    attempt with AttributeError until it reached ERROR hours later."""
    seen: list[object] = []

    @saga.step
    def hello(input: str, logger: logging.LoggerAdapter[logging.Logger]) -> object:
        logger.info("hello %s", input)
        return ship(Order(input))

    @saga.step
    def ship(logger: logging.LoggerAdapter[logging.Logger], input: Order) -> None:
        seen.append((type(input), input.item, isinstance(logger, logging.LoggerAdapter)))

    saga.start("i", hello, "book", {"some": "state"})
    saga.run(workers=1, drain=True)
    record = saga.get("i")
    assert (record.status, record.error) == (Status.COMPLETE, None)
    assert seen == [(Order, "book", True)]  # the input decoded by its own annotation


def test_a_conflicting_step_is_refused_at_registration(saga: Saga) -> None:
    with pytest.raises(TypeError, match=r"step 'pay'.*def pay\(input, state\)"):
        @saga.step
        def pay(state: object, amount: int) -> None:
            pass
    assert "pay" not in saga.steps
