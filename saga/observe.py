"""The worker's plug point for in-process observers of steps (metrics, tracing).

Pass objects with the two methods of `StepObserver` to `Saga.run(observers=[...])` or
`Runner(..., observers=[...])`. The worker thread that runs a step calls
`step_started` just before the step function and `step_finished` once its outcome is
written (or dropped), with a frozen `StepEvent`. Calls are synchronous, on the worker
thread, so keep them quick; an observer that raises is logged and otherwise ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

logger = logging.getLogger(__name__)

# What became of an attempt: went on to another step at once, or later (a delayed
# continuation, back in the queue), completed, will be retried, failed for good, was
# cancelled, or the row was lost to another runner.
Outcome = Literal["continued", "delayed", "complete", "retry", "error", "cancelled", "lost"]


@dataclass(frozen=True, slots=True)
class StepEvent:
    """One attempt of one step. `outcome`, `error`, `exception` and `duration` (seconds
    the step function ran) are None in `step_started`; `error` (the message, or the
    traceback of a crash) and `exception` (what the step raised, if it raised) stay None
    unless it failed.

    `claim_delay` is the seconds from the claim of the row to the start of its step (the
    wait in this process: a batch's buffer, a busy thread); None for the steps that run
    on at once after it, which `hop` counts (0: the claimed step, 1: the continuation
    after it, ...). `trace` is the trace context stored with the instance, an opaque
    text for `saga.telemetry` (None when nothing traced the instance).
    """

    saga: str
    instance: str
    id: int
    step: str
    attempt: int
    runner: str
    outcome: Outcome | None = None
    error: str | None = None
    duration: float | None = None
    claim_delay: float | None = None
    hop: int = 0
    exception: BaseException | None = None
    trace: str | None = None


class StepObserver(Protocol):
    """Told about each step a worker runs (see the module docstring)."""

    def step_started(self, event: StepEvent) -> None: ...

    def step_finished(self, event: StepEvent) -> None: ...


class Observers:
    """Several observers as one; each call goes to all of them, errors logged."""

    def __init__(self, observers: Sequence[StepObserver] = ()) -> None:
        for o in observers:
            if not callable(getattr(o, "step_started", None)) or not callable(
                    getattr(o, "step_finished", None)):
                raise TypeError(f"an observer needs step_started() and step_finished(), "
                                f"got {o!r}")
        self._all = tuple(observers)

    def __bool__(self) -> bool:
        return bool(self._all)

    def started(self, event: StepEvent) -> None:
        for o in self._all:
            try:
                o.step_started(event)
            except Exception:  # an observer must not break the worker
                logger.exception("observer %r failed in step_started", o,
                                 extra={"action": "observer_error"})

    def finished(self, event: StepEvent) -> None:
        for o in self._all:
            try:
                o.step_finished(event)
            except Exception:
                logger.exception("observer %r failed in step_finished", o,
                                 extra={"action": "observer_error"})
