"""How a step's declared parameters receive its values: input, state, set_state, logger
(and, when declared, the worker's connection `conn`).

The rule: a parameter named `input`, `state`, `set_state` or `logger` gets that value
wherever it stands (`def hello(input, logger)` gets the logger, not the state); a
parameter with another name gets the value of its position in (input, state, set_state,
logger), as in the original library (`def step(data, st)` gets the input and the
state). A step where two parameters would get the same value is refused when it is
registered, with the signature to write instead. Known names may also be keyword-only
(`def step(input, *, logger)`), and so may `conn`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

# The values a step may receive, in their positional order.
STEP_PARAMETERS: Final = ("input", "state", "set_state", "logger")

_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_WHAT: Final = ("input", "state", "set_state function", "logger")


@dataclass(frozen=True, slots=True)
class Binding:
    """Which value each parameter of a step function receives."""

    positional: tuple[int, ...]  # per positional argument passed: the index of its value
    keywords: tuple[tuple[str, int], ...]  # keyword-only parameters: (name, index of value)
    slots: tuple[str, ...]  # per value: the parameter that receives it ("" for none)
    wants_conn: bool

    def call(self, fn: Callable[..., object], values: Sequence[object], conn: object) -> object:
        """Call *fn* with *values* (input, state, set_state, logger) as it declared them."""
        kwargs: dict[str, object] = {name: values[i] for name, i in self.keywords}
        if self.wants_conn:
            kwargs["conn"] = conn
        return fn(*[values[i] for i in self.positional], **kwargs)


def bind(fn: Callable[..., object], name: str) -> Binding:
    """Read *fn*'s signature into a `Binding`; raise `TypeError` for one a step cannot
    have (a value given twice, more than four positional parameters without default,
    `conn` before the others, a keyword-only parameter without default)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as e:
        raise TypeError(f"step {name!r}: cannot read its signature: {e}") from e
    receivers: dict[int, str] = {}  # index of a value -> the parameter that receives it
    positional: list[int] = []
    keywords: list[tuple[str, int]] = []
    wants_conn = False

    def receive(index: int, parameter: str) -> None:
        if index in receivers:
            raise TypeError(
                f"step {name!r}: parameters {receivers[index]!r} and {parameter!r} would "
                f"both receive the {_WHAT[index]}. A parameter named input, state, set_state "
                f"or logger receives that value wherever it stands, any other name the value "
                f"of its position; write e.g. `{suggestion(name, params)}`")
        receivers[index] = parameter

    for p in params:
        if p.name == "conn" and p.kind in (*_POSITIONAL, inspect.Parameter.KEYWORD_ONLY):
            wants_conn = True
        elif p.kind in _POSITIONAL:
            if wants_conn:
                raise TypeError(f"step {name!r}: declare `conn` after the other parameters "
                                "(best keyword-only: `def step(input, *, conn)`)")
            at = len(positional)
            if p.name in STEP_PARAMETERS:
                index = STEP_PARAMETERS.index(p.name)
            elif at < len(STEP_PARAMETERS):
                index = at
            elif p.default is inspect.Parameter.empty:
                raise TypeError(
                    f"step {name!r} declares more than {len(STEP_PARAMETERS)} positional "
                    f"parameters {STEP_PARAMETERS}: {p.name!r} has no default")
            else:
                continue  # an extra parameter with a default: left to it
            receive(index, p.name)
            positional.append(index)
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            if positional != list(range(len(positional))):
                raise TypeError(f"step {name!r}: with *{p.name}, the parameters before it "
                                f"get the values of their positions; write e.g. "
                                f"`{suggestion(name, params)}`")
            for index in range(len(positional), len(STEP_PARAMETERS)):
                receive(index, f"*{p.name}")
                positional.append(index)
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and p.name in STEP_PARAMETERS:
            index = STEP_PARAMETERS.index(p.name)
            receive(index, p.name)
            keywords.append((p.name, index))
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty:
            raise TypeError(
                f"step {name!r}: keyword-only parameter {p.name!r} needs a default "
                "(a step receives input, state, set_state, logger and, if declared, conn)")
    slots = tuple(receivers.get(i, "") for i in range(len(STEP_PARAMETERS)))
    return Binding(tuple(positional), tuple(keywords), slots, wants_conn)


def suggestion(name: str, params: Sequence[inspect.Parameter]) -> str:
    """The signature to write: the known values up to the last one *params* seem to
    want, in their order, and `conn` keyword-only if declared."""
    wanted = [p.name for p in params if p.name in STEP_PARAMETERS]
    last = max((STEP_PARAMETERS.index(w) for w in wanted), default=0)
    count = max(last + 1, sum(p.kind in _POSITIONAL and p.name != "conn" for p in params))
    names = list(STEP_PARAMETERS[:min(count, len(STEP_PARAMETERS))])
    if any(p.name == "conn" for p in params):
        names += ["*", "conn"]
    return f"def {name}({', '.join(names)})"
