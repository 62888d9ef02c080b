"""From what a step did to what the worker writes, as values: `decide()` is pure.

A *result* says what happened to one attempt (`Continued`, `Finished`, `Rejected`,
`Crashed`, `Abandoned`); a *transition* says what becomes of the row (`Continue`,
`Complete`, `Retry`, `Fail`). `Store.apply` writes a transition under the lease.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .spec import RetryPolicy

# -- results: what an attempt came to ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Continued:
    """The step returned a continuation: run *step* next (values already encoded)."""

    step: str
    input: str
    state: str | None  # None keeps the current state
    delay: float


@dataclass(frozen=True, slots=True)
class Finished:
    """The step returned a final value (encoded, or None to keep the state)."""

    state: str | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """No retry can help: `SagaError`, a row that does not decode, an outcome that cannot
    be stored (a value that does not fit, a step of another saga)."""

    error: str


@dataclass(frozen=True, slots=True)
class Crashed:
    """The step raised any other exception: *error* is its traceback."""

    error: str


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The row was claimed again after its runner died during each earlier attempt."""

    step: str


Result = Continued | Finished | Rejected | Crashed | Abandoned

# -- transitions: what becomes of the row ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Continue:
    """Move on to *step*: at once on this thread when `delay` is 0, else PENDING."""

    step: str
    input: str
    state: str | None
    delay: float


@dataclass(frozen=True, slots=True)
class Complete:
    """COMPLETE, with this final state (None keeps the state)."""

    state: str | None


@dataclass(frozen=True, slots=True)
class Retry:
    """Back to PENDING for another attempt of the same step, after *delay* seconds."""

    error: str
    delay: float


@dataclass(frozen=True, slots=True)
class Fail:
    """ERROR for good (the dead letter)."""

    error: str


Transition = Continue | Complete | Retry | Fail


def decide(result: Result, attempt: int, policy: RetryPolicy,
           rand: Callable[[], float] = random.random) -> Transition:
    """Return the transition for *result* of claim number *attempt* of a step.

    Pure but for the backoff's jitter, which *rand* supplies (a number in [0, 1)).
    """
    match result:
        case Continued(step, input, state, delay):
            return Continue(step, input, state, delay)
        case Finished(state):
            return Complete(state)
        case Rejected(error):
            return Fail(error)
        case Crashed(error):
            if attempt >= policy.max_attempts:
                return Fail(error)
            return Retry(error, policy.delay(attempt, rand))
        case Abandoned(step):
            return Fail(f"step {step!r} was claimed {attempt - 1} times without finishing "
                        f"(max_attempts={policy.max_attempts}): its runner died each time")
    raise TypeError(f"not a step result: {result!r}")  # pragma: no cover


def exhausted(attempt: int, policy: RetryPolicy) -> bool:
    """True when claim number *attempt* is beyond the policy: earlier claims all died."""
    return attempt > policy.max_attempts
