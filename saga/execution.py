"""Run one claimed instance: its step, then each undelayed continuation, on one thread.

The path of one attempt: decode the row, call the step (`Step.invoke`), turn what it
returned or raised into a result value, `decide()` the transition, and write it with
`Store.apply` under the lease taken at the claim, so a runner that lost the row
(reaped while it was still running) changes nothing. A `conn` step's own writes share
the transaction that records its outcome: they commit together or not at all.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from .errors import ConcurrencyException, SagaError
from .observe import Observers, Outcome, StepEvent
from .outcomes import (
    Abandoned,
    Complete,
    Continue,
    Continued,
    Crashed,
    Fail,
    Finished,
    Rejected,
    Result,
    Retry,
    Transition,
    decide,
    exhausted,
)
from .pools import Lent
from .records import Status
from .spec import SagaSpec, backoff
from .steps import UNKNOWN, Continuation, SetState, Step
from .store import Claim, Claimed, Conn, Found, Lease, Store

logger = logging.getLogger(__name__)
T = TypeVar("T")
_PAUSE = threading.Event()  # never set: waits between retries, without time.sleep
step_logger = logging.getLogger("saga.steps")


@dataclass
class RunStats:
    """What a runner did: step functions run, and how instances ended or waited."""

    steps: int = 0  # step functions run
    completed: int = 0  # instances that became COMPLETE
    failed: int = 0  # instances that became ERROR
    retried: int = 0  # failed attempts sent back to PENDING with a backoff
    cancelled: int = 0  # instances ended CANCELLED at a step boundary
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:  # worker threads add concurrently
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def summary(self) -> str:
        return (f"{self.steps} steps run, {self.completed} completed, "
                f"{self.failed} failed, {self.retried} retried, {self.cancelled} cancelled")


class StepLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A step's logger: every record carries the saga, instance, id, step and attempt."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class _LeaseLost(Exception):
    """The row is no longer ours: undo the transaction's writes (a `conn` step's too)."""


class _BadOutcome(Exception):
    """A `conn` step returned what cannot be recorded: undo its writes, then fail."""


@dataclass
class Execution:
    """The context of one claimed instance while this thread runs it."""

    spec: SagaSpec
    store: Store
    lent: Lent  # the worker thread's (autocommit) connection; replaced if it breaks
    row: Claimed
    runner_id: str
    stopping: threading.Event
    stats: RunStats
    observers: Observers = field(default_factory=Observers)
    patience: float = 15.0  # how long to keep retrying a write after a connection failure
    on_step: Callable[[Lease, str], None] | None = None  # tells the runner what runs now
    # Asked, when an outcome ends this thread's hold on the instance, for the claim to
    # fold into the outcome's statement (None: claim separately); what it found.
    fold: Callable[[], Claim | None] | None = None
    found: Found | None = None
    state_text: str | None = None  # the instance's state as stored, kept current
    claimed_at: float | None = None  # monotonic time of the row's claim (StepEvent)
    _hop: int = field(default=0, init=False)  # continuations run since the claim
    _raised: BaseException | None = field(default=None, init=False)  # by the last attempt
    _began: float | None = field(default=None, init=False)  # monotonic start of it

    def run(self) -> None:
        """Run the claimed step and every undelayed continuation that follows it."""
        row = self.row
        lease = Lease(row.id, self.runner_id, row.attempt)
        step = self.spec.steps[row.step]
        input_text, self.state_text = row.input, row.state
        input_value: object = UNKNOWN
        state_value: object = UNKNOWN
        if exhausted(lease.attempt, self.spec.policy):
            self._finish(lease, step, Abandoned(step.name))
            return
        while True:
            try:
                input = (step.decode_input(input_text) if input_value is UNKNOWN
                         else input_value)
                state = (step.decode_state(self.state_text) if state_value is UNKNOWN
                         else state_value)
            except ValueError as e:
                self._finish(lease, step, Rejected(f"cannot run this row: {e}"))
                return
            following = self._attempt(lease, step, input, state)
            if following is None:
                return
            step, lease, continuation = following
            self._hop += 1
            input_text, input_value = continuation.input, continuation.input_value
            # The state as the step left it in the row (its own continuation's, or a
            # set_state checkpoint's), decoded again unless we hold the decoded value.
            state_value = continuation.state_value if continuation.state is not None else UNKNOWN

    def _attempt(self, lease: Lease, step: Step, input: object,
                 state: object) -> tuple[Step, Lease, Continuation] | None:
        """Run *step* once and record its outcome; return what runs on at once, if anything."""
        context = self._context(lease, step)
        log = StepLogger(step_logger, context)
        set_state = self._set_state_for(lease, step)
        self.stats.add(steps=1)
        if self.on_step is not None:
            self.on_step(lease, step.name)
        began = self._began = time.monotonic()
        if self.observers:
            self.observers.started(self._event(context))
        value: object = None
        try:
            if step.wants_conn:
                # The step's writes and its outcome: one transaction, guarded by the lease.
                conn = self.lent.get()
                with conn.transaction():
                    self.store.plan_as_usual(conn, here=True)  # the step's own statements
                    value = step.invoke(input, state, set_state, log, conn)
                    result = self._result_of(step, value)
                    if isinstance(result, Rejected):
                        raise _BadOutcome(result.error)  # undo the step's writes
                    transition = decide(result, lease.attempt, self.spec.policy)
                    status = self._check(self._apply(conn, lease, transition, step))
                return self._recorded(lease, step, value, transition, status,
                                      time.monotonic() - began)
            value = step.invoke(input, state, set_state, log, None)
            result = self._result_of(step, value)
        except _LeaseLost:
            self._lost(lease, step, time.monotonic() - began)
            return None
        except (SagaError, _BadOutcome) as e:
            result = Rejected(str(e) or type(e).__name__)
            self._raised = e  # for the observers (a span records it)
        except Exception as e:
            self._raised = e
            if step.wants_conn and self.lent.broken:
                # The step's transaction died with the connection: nothing of it stands,
                # and the row goes back to PENDING through release_stale.
                raise
            result = Crashed(traceback.format_exc())
        return self._finish(lease, step, result, value, time.monotonic() - began)

    def _result_of(self, step: Step, value: object) -> Result:
        """What a step's return value means: go on, or finish with a final state."""
        if isinstance(value, Continuation):
            if not self.spec.owns(value.step):
                return Rejected(
                    f"step {step.name!r} continued with step {value.step.name!r} of saga "
                    f"{value.step.owner!r}: a saga can only continue with its own steps")
            return Continued(value.step.name, value.input, value.state, value.delay)
        if value is None:
            return Finished(None)
        try:
            return Finished(step.encode_result(value))  # checked against the annotation
        except TypeError as e:
            return Rejected(f"step {step.name!r} returned a final state that cannot be "
                            f"stored: {e}")

    def _finish(self, lease: Lease, step: Step, result: Result, value: object = None,
                duration: float = 0.0) -> tuple[Step, Lease, Continuation] | None:
        """Decide and write the outcome of a plain step (or of a failure). An error while
        writing is no failure of the step: it goes up to the worker loop, and the row
        back to PENDING through release_stale."""
        transition = decide(result, lease.attempt, self.spec.policy)
        runs_on = self._runs_on(step, transition)
        claim = None if runs_on or self.fold is None else self.fold()
        try:
            if claim is None:
                status = self._check(self._write(
                    lambda conn: self._apply(conn, lease, transition, step)))
            else:
                written, found = self._write(
                    lambda conn: self.store.apply_and_claim(conn, lease, transition, claim))
                self.found = _with_own_delay(found, transition)
                status = self._check(written)
        except _LeaseLost:
            self._lost(lease, step, duration)
            return None
        return self._recorded(lease, step, value, transition, status, duration)

    def _runs_on(self, step: Step, transition: Transition) -> bool:
        """True if *transition* goes on at once on this thread: an undelayed `Continue`,
        unless the runner stops or a limit of the next step needs a claim of its own."""
        return (isinstance(transition, Continue) and transition.delay == 0
                and not self.stopping.is_set()
                and self.spec.runs_on(step.name, transition.step))

    def _apply(self, conn: Conn, lease: Lease, transition: Transition,
               step: Step) -> int | None:
        return self.store.apply(conn, lease, transition,
                                run_on=self._runs_on(step, transition))

    def _recorded(self, lease: Lease, step: Step, value: object, transition: Transition,
                  status: int, duration: float) -> tuple[Step, Lease, Continuation] | None:
        """Account for a written outcome (stats, log, observers); return what runs on."""
        following: tuple[Step, Lease, Continuation] | None = None
        error: str | None = None
        extra = self._context(lease, step)
        outcome: Outcome
        if status == Status.CANCELLED:
            outcome = "cancelled"
            self.stats.add(cancelled=1)
            logger.info("instance %s cancelled after step %s", self.row.instance, step.name,
                        extra={"action": "cancelled", **extra})
        elif isinstance(transition, Continue):
            outcome = "continued" if status == Status.RUNNING else "delayed"
            if transition.state is not None:
                self.state_text = transition.state
            logger.debug("instance %s (id %d): step %s done in %.1f ms, next %s%s",
                         self.row.instance, lease.id, step.name, duration * 1000,
                         transition.step, "" if status == Status.RUNNING
                         else f" in {transition.delay:g}s",
                         extra={"action": "step_done", **extra})
            if status == Status.RUNNING:
                assert isinstance(value, Continuation)
                following = (value.step, lease._replace(attempt=1), value)
        elif isinstance(transition, Complete):
            outcome = "complete"
            self.stats.add(completed=1)
            logger.info("instance %s complete after step %s", self.row.instance, step.name,
                        extra={"action": "complete", **extra})
        elif isinstance(transition, Retry):
            outcome, error = "retry", transition.error
            self.stats.add(retried=1)
            logger.warning("step %s of instance %s failed (attempt %d), retry in %.1fs: %s",
                           step.name, self.row.instance, lease.attempt, transition.delay,
                           _last_line(error), extra={"action": "retry", **extra})
        else:
            assert isinstance(transition, Fail)
            outcome, error = "error", transition.error
            self.stats.add(failed=1)
            logger.error("instance %s failed in step %s: %s", self.row.instance, step.name,
                         _last_line(error), extra={"action": "error", **extra})
        self._observe(extra, outcome, error, duration)
        return following

    def _lost(self, lease: Lease, step: Step, duration: float) -> None:
        extra = self._context(lease, step)
        logger.warning("lost instance %s to another runner during step %s; outcome dropped",
                       self.row.instance, step.name, extra={"action": "lease_lost", **extra})
        self._observe(extra, "lost", None, duration)

    def _observe(self, context: dict[str, Any], outcome: Outcome, error: str | None,
                 duration: float) -> None:
        if self.observers:
            self.observers.finished(self._event(context, outcome, error, duration))
        self._raised = None  # let go of the traceback's frames

    def _event(self, context: dict[str, Any], outcome: Outcome | None = None,
               error: str | None = None, duration: float | None = None) -> StepEvent:
        delay = None
        if self._hop == 0 and self.claimed_at is not None and self._began is not None:
            delay = max(0.0, self._began - self.claimed_at)
        return StepEvent(saga=context["saga"], instance=context["instance"],
                         id=context["id"], step=context["step"],
                         attempt=context["attempt"], runner=context["runner"],
                         outcome=outcome, error=error, duration=duration, claim_delay=delay,
                         hop=self._hop, trace=self.row.trace,
                         exception=self._raised if outcome is not None else None)

    def _context(self, lease: Lease, step: Step) -> dict[str, Any]:
        """What every log record about this instance carries (see saga.logs)."""
        return {"saga": self.spec.name, "instance": self.row.instance, "id": lease.id,
                "step": step.name, "attempt": lease.attempt, "runner": self.runner_id}

    @staticmethod
    def _check(status: int | None) -> int:
        if status is None:
            raise _LeaseLost
        return status

    def _set_state_for(self, lease: Lease, step: Step) -> SetState:
        """The `set_state` a step receives: a checkpoint committed at once, lease-guarded."""
        def set_state(state: object) -> None:
            text = step.encode_state(state)  # TypeError here, in the step, if it won't do
            if step.wants_conn:
                # The thread's connection is inside the step's transaction: checkpoint on
                # another one, so that the state survives the step's failure.
                with self.lent.pool.connection() as other, other.transaction():
                    written = self.store.set_state(other, lease, text)
            else:
                written = self._write(lambda conn: self.store.set_state(conn, lease, text))
            if not written:
                raise ConcurrencyException(
                    f"instance {self.row.instance!r} is no longer owned by this runner")
            self.state_text = text
        return set_state

    def _write(self, write: Callable[[Conn], T]) -> T:
        """Run *write* (one statement) in a transaction of its own; after a connection
        failure, retry on a fresh connection until `patience` runs out.

        The lease makes a repeated write harmless, and a step that finished should not
        run again because the database blinked while it ran.
        """
        deadline = time.monotonic() + self.patience
        failures = 0
        while True:
            try:
                conn = self.lent.get(timeout=max(0.1, deadline - time.monotonic()))
                return write(conn)  # one statement, autocommitted: its own transaction
            except PoolClosed:
                raise  # the runner is being shut down under us
            except (psycopg.OperationalError, PoolTimeout):
                if not self.lent.broken or time.monotonic() > deadline:
                    raise  # not the connection (a timeout, say), or out of patience
                logger.warning("connection lost while recording instance %s; retrying",
                               self.row.instance, extra={
                                   "action": "write_retry", "saga": self.spec.name,
                                   "instance": self.row.instance, "id": self.row.id,
                                   "runner": self.runner_id})
            failures += 1
            _PAUSE.wait(backoff(failures, 0.05, 1.0))


def _with_own_delay(found: Found, transition: Transition) -> Found:
    """*found*, with the due time of the row just written back to PENDING (which the
    folded next_due could not see) when nothing was claimed."""
    if found.rows or not isinstance(transition, Continue | Retry):
        return found
    due = transition.delay if found.due_in is None else min(found.due_in, transition.delay)
    return Found([], due)


def _last_line(error: str) -> str:
    return next((line for line in reversed(error.splitlines()) if line.strip()), "")
