"""The `@saga.step` wrapper: continuations, parameter adaptation, type hints."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from .hints import type_hints
from .signatures import bind

if TYPE_CHECKING:
    import psycopg

    from .core import Saga

StepFunction = Callable[..., object]
SetState = Callable[[object], None]
Delay = float | int | timedelta

MAX_DELAY: Final = 100 * 365.25 * 24 * 3600  # seconds; far beyond any sane wait, within SQL's

# Values of exactly these annotated types need no decode to know they fit.
_SCALARS: Final = (int, float, str, bool)


@dataclass(frozen=True, slots=True)
class Continuation:
    """What a step returns to say "run *step* next": input and state already encoded.

    `state` is None to keep the instance's current state; `delay` is in seconds.
    """

    step: Step
    input: str
    state: str | None
    delay: float


class Step:
    """A registered step. Calling it does not run it: it returns a `Continuation`.

    The plain function stays reachable as `.fn`, e.g. to unit-test it.
    """

    def __init__(self, fn: StepFunction, saga: Saga) -> None:
        if not callable(fn):
            raise TypeError(f"@step needs a function, got {fn!r}")
        self.fn = fn
        self.saga = saga
        self.name: str = getattr(fn, "__name__", "")
        if not self.name or self.name == "<lambda>":
            raise ValueError(f"a step needs a function with a name, got {fn!r}")
        self.binding = bind(fn, self.name)  # who gets input, state, ...: by name, else place
        self.parameters, self.wants_conn = self.binding.slots, self.binding.wants_conn
        self._hints: tuple[Any, Any] | None = None
        with contextlib.suppress(NameError):  # a name defined later: resolved on first use
            self.hints()
        functools.update_wrapper(self, fn)

    def __call__(
        self, input: object = None, state: object = None, delay: Delay | None = None
    ) -> Continuation:
        """Return a continuation: run this step next with *input* after *delay*.

        `state=None` keeps the current state. Raise `TypeError` if a value cannot be
        encoded or does not fit this step's annotations, `ValueError` for a bad delay.
        """
        return Continuation(
            step=self,
            input=self.encode_input(input),
            state=None if state is None else self.encode_state(state),
            delay=delay_seconds(delay),
        )

    def encode_input(self, value: object) -> str:
        """Encode an input for this step, checking now that the step will be able to read it.

        Raise `TypeError` if it cannot be encoded or does not fit the annotation.
        """
        return self._encode(value, 0, "input")

    def encode_state(self, value: object) -> str:
        """Encode a state for this step, checked like `encode_input`."""
        return self._encode(value, 1, "state")

    def _encode(self, value: object, which: int, what: str) -> str:
        text = self.saga.codec.encode(value)
        if self._fits_as_is(value, which):
            return text
        try:
            self._typed(text, which)  # decode it as the step will: the surest check
        except ValueError as e:
            raise TypeError(f"{what} does not fit step {self.name!r}: {e}") from None
        return text

    def _fits_as_is(self, value: object, which: int) -> bool:
        """True when *value* is sure to decode for parameter *which* without trying:
        no annotation (or Any, object), or a plain scalar of exactly the annotated type.
        Saves a decode per value where starting many instances or running many steps."""
        try:
            hint = self.hints()[which]
        except NameError:
            return False  # let the decode report it
        if hint is None or hint is Any or hint is object:
            return True
        return hint in _SCALARS and type(value) is hint

    def hints(self) -> tuple[Any, Any]:
        """The annotations of the input and state parameters (None where absent).

        Raise `NameError` when an annotation names something that does not exist.
        """
        if self._hints is None:
            resolved = type_hints(self.fn)
            names = self.parameters
            self._hints = (
                resolved.get(names[0]) if len(names) > 0 else None,
                resolved.get(names[1]) if len(names) > 1 else None,
            )
        return self._hints

    def decode_input(self, text: str | None) -> object:
        """Decode an input column for this step: `ValueError` if it does not fit."""
        return self._decode(text, 0, "input")

    def decode_state(self, text: str | None) -> object:
        """Decode a state column for this step: `ValueError` if it does not fit."""
        return self._decode(text, 1, "state")

    def _decode(self, text: str | None, which: int, what: str) -> object:
        if text is None:
            if which == 1:
                return None  # no state yet: the normal start
            text = "null"  # an input that is SQL NULL must fit the hint like a JSON null
        try:
            return self._typed(text, which)
        except ValueError as e:
            raise ValueError(f"{what} of step {self.name!r} does not decode: {e}") from e

    def _typed(self, text: str, which: int) -> object:
        """Decode *text* with the annotation of parameter *which*; `ValueError` if it fails."""
        try:
            hint = self.hints()[which]
        except NameError as e:
            raise ValueError(f"cannot resolve the annotations of step {self.name!r}: {e}") from e
        try:
            return self.saga.codec.decode(text, hint)
        except Exception as e:  # a codec may fail in many ways (pickle): all mean "bad value"
            raise ValueError(str(e)) from e

    def invoke(
        self,
        input: object,
        state: object,
        set_state: SetState,
        logger: logging.LoggerAdapter[logging.Logger],
        conn: psycopg.Connection[Any] | None,
    ) -> object:
        """Run the function with the parameters it declares (see `saga.signatures`)."""
        return self.binding.call(self.fn, (input, state, set_state, logger), conn)

    def __repr__(self) -> str:
        return f"<Step {self.saga.name!r}.{self.name}>"


def delay_seconds(delay: Delay | None) -> float:
    """Return *delay* in seconds; None means at once. Reject negative and non-finite values."""
    if delay is None:
        return 0.0
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise TypeError(f"delay must be seconds (a number) or a timedelta, got {delay!r}")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY:
        raise ValueError(f"delay must be 0 to {MAX_DELAY:.0f} seconds (100 years), got {delay!r}")
    return seconds
