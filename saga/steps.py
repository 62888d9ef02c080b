"""The `@saga.step` wrapper: continuations, parameter adaptation, type hints."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from .codecs import Codec
from .hints import type_hints
from .signatures import bind

if TYPE_CHECKING:
    import psycopg

StepFunction = Callable[..., object]
SetState = Callable[[object], None]
Delay = float | int | timedelta

MAX_DELAY: Final = 100 * 365.25 * 24 * 3600  # seconds; far beyond any sane wait, within SQL's

# Values of exactly these annotated types need no decode to know they fit.
_SCALARS: Final = (int, float, str, bool)


class _Unknown:
    """The decoded value is not known yet (it was never decoded): decode the text."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


@dataclass(frozen=True, slots=True)
class Continuation:
    """What a step returns to say "run *step* next": input and state already encoded.

    `state` is None to keep the instance's current state; `delay` is in seconds. The
    values as the next step will read them are kept when checking the encoding produced
    them, so a continuation that runs on at once is not decoded a second time.
    """

    step: Step
    input: str
    state: str | None
    delay: float
    input_value: object = field(default=UNKNOWN, compare=False, repr=False)
    state_value: object = field(default=UNKNOWN, compare=False, repr=False)


class Step:
    """A registered step. Calling it does not run it: it returns a `Continuation`.

    The plain function stays reachable as `.fn`, e.g. to unit-test it. *owner* is the
    name of the saga it is registered on and *schema* that saga's schema (for messages);
    *codec* encodes its values.
    """

    def __init__(self, fn: StepFunction, owner: str, codec: Codec,
                 schema: str | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"@step needs a function, got {fn!r}")
        self.fn = fn
        self.owner = owner
        self.schema = schema
        self.codec = codec
        self.name: str = getattr(fn, "__name__", "")
        if not self.name or self.name == "<lambda>":
            raise ValueError(f"a step needs a function with a name, got {fn!r}")
        self.binding = bind(fn, self.name)  # who gets input, state, ...: by name, else place
        self.parameters, self.wants_conn = self.binding.slots, self.binding.wants_conn
        self._hints: tuple[Any, Any] | None = None
        self._result: tuple[Any] | None = None  # the return annotation, continuations left out
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
        seconds = delay_seconds(delay)
        input_text, input_value = self.encoded(input, 0)
        state_text, state_value = (None, UNKNOWN) if state is None else self.encoded(state, 1)
        return Continuation(step=self, input=input_text, state=state_text, delay=seconds,
                            input_value=input_value, state_value=state_value)

    def encode_input(self, value: object) -> str:
        """Encode an input for this step, checking now that the step will be able to read it.

        Raise `TypeError` if it cannot be encoded or does not fit the annotation.
        """
        return self.encoded(value, 0)[0]

    def encode_state(self, value: object) -> str:
        """Encode a state for this step, checked like `encode_input`."""
        return self.encoded(value, 1)[0]

    def encoded(self, value: object, which: int) -> tuple[str, object]:
        """Encode *value* for parameter *which* (0 input, 1 state), checked against its
        annotation; return the text and the value the step would decode from it (or
        `UNKNOWN` where no decode was needed to know that it fits).

        The one way saga encodes a value: `start`, `call`, continuations, `set_state`
        and a last step's final state all come through here.
        """
        text = self.codec.encode(value)
        if self._fits_as_is(value, which):
            return text, value if self.hints()[which] in _SCALARS else UNKNOWN
        try:
            decoded = self._typed(text, which)  # decode it as the step will: the surest check
        except ValueError as e:
            what = "input" if which == 0 else "state"
            raise TypeError(f"{what} does not fit step {self.name!r}: {e}") from None
        return text, decoded

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

    def encode_result(self, value: object) -> str:
        """Encode a last step's final value, checked against the step's return annotation
        (without the continuations it names) as inputs and states are against theirs.

        Raise `TypeError` if it cannot be encoded or does not fit.
        """
        text = self.codec.encode(value)
        hint = self._result_hint()
        if hint is None or (hint in _SCALARS and type(value) is hint):
            return text
        try:
            self.codec.decode(text, hint)
        except Exception as e:  # a codec may fail in many ways: all mean "does not fit"
            raise TypeError(f"final state does not fit the return annotation of step "
                            f"{self.name!r}: {e}") from None
        return text

    def _result_hint(self) -> Any:
        """The return annotation with continuation types left out; None if nothing is left
        to check (absent, Any, object, None, or only continuations)."""
        if self._result is None:
            try:
                hint = type_hints(self.fn).get("return")
            except NameError:
                hint = None  # unresolvable: the step's tests will say so; we do not guess
            self._result = (_without_continuations(hint),)
        return self._result[0]

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
            return self.codec.decode(text, hint)
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
        return f"<Step {self.owner!r}.{self.name}>"


def _without_continuations(hint: Any) -> Any:
    """*hint* without `Continuation`/`Step` members; None when nothing checkable is left."""
    def is_continuation(t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, Continuation | Step)

    if hint is None or hint is Any or hint is object or hint is type(None):
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kept = [t for t in typing.get_args(hint) if not is_continuation(t)]
        if not kept or all(t is type(None) for t in kept):
            return None
        if len(kept) == len(typing.get_args(hint)):
            return hint
        return functools.reduce(lambda a, b: a | b, kept)
    return None if is_continuation(hint) else hint


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
