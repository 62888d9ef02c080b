"""Run one claimed instance: its step, then each undelayed continuation, on one thread.

Every write is guarded by the lease taken at the claim, so a runner that lost the row
(reaped while it was still running) changes nothing. A `conn` step's own writes share
the transaction that records its outcome: they commit together or not at all.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback
from collections.abc import Callable, MutableMapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from .errors import ConcurrencyException, SagaError
from .pools import borrow, give_back
from .records import Status
from .steps import Continuation, Step
from .store import Claimed, Conn, Lease, Store

if TYPE_CHECKING:
    from .core import Saga

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
        with self._lock:
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
    """A step returned what cannot be recorded: a programming error, so no retry."""


@dataclass
class Execution:
    """The context of one claimed instance while this thread runs it."""

    saga: Saga
    store: Store
    pool: ConnectionPool[Any]  # for checkpoints during `conn` steps, and after a failure
    conn: Conn  # the worker thread's (autocommit) connection; replaced if it breaks
    row: Claimed
    runner_id: str
    stopping: threading.Event
    stats: RunStats
    patience: float = 15.0  # how long to keep retrying a write after a connection failure
    state_text: str | None = None  # the instance's state as stored, kept current
    _spare: ExitStack = field(default_factory=ExitStack)

    def run(self) -> None:
        """Run the claimed step and every undelayed continuation that follows it."""
        with self._spare:  # gives back any connection taken to replace a broken one
            self._run()

    def _run(self) -> None:
        saga, row = self.saga, self.row
        lease = Lease(row.id, self.runner_id, row.attempt)
        step = saga.steps[row.step]
        input_text, self.state_text = row.input, row.state
        if lease.attempt > saga.max_attempts:
            self._fail(lease, step, final=True, error=(
                f"step {step.name!r} was claimed {lease.attempt - 1} times without finishing "
                f"(max_attempts={saga.max_attempts}): its runner died each time"))
            return
        while True:
            try:
                input, state = step.decode_input(input_text), step.decode_state(self.state_text)
            except ValueError as e:
                self._fail(lease, step, final=True, error=f"cannot run this row: {e}")
                return
            following = self._attempt(lease, step, input, state)
            if following is None:
                return
            step, input_text, lease = following

    def _attempt(self, lease: Lease, step: Step, input: object,
                 state: object) -> tuple[Step, str, Lease] | None:
        """Run *step* once and record its outcome; return what runs on at once, if anything."""
        log = StepLogger(step_logger, self._context(lease, step))
        set_state = self._set_state_for(lease, step)
        self.stats.add(steps=1)
        try:
            if step.wants_conn:
                # The step's writes and its outcome: one transaction, guarded by the lease.
                conn = self._usable()
                with conn.transaction():
                    result = step.invoke(input, state, set_state, log, conn)
                    return self._advance(conn, lease, step, result)
            result = step.invoke(input, state, set_state, log, None)
        except _LeaseLost:
            self._lost(lease, step)
            return None
        except (SagaError, _BadOutcome) as e:
            self._fail(lease, step, final=True, error=str(e) or type(e).__name__)
        except Exception:
            error = traceback.format_exc()
            if step.wants_conn and self.conn.broken:
                # The step's transaction died with the connection: nothing of it stands,
                # and the row goes back to PENDING through release_stale.
                raise
            final = lease.attempt >= self.saga.max_attempts
            self._fail(lease, step, final=final, error=error)
        else:
            return self._record(lease, step, result)
        return None

    def _record(self, lease: Lease, step: Step, result: object) -> tuple[Step, str, Lease] | None:
        """Write a plain step's outcome. An error here is no failure of the step: it goes up
        to the worker loop, and the row back to PENDING through release_stale."""
        try:
            return self._write(lambda conn: self._advance(conn, lease, step, result))
        except _LeaseLost:
            self._lost(lease, step)
        except _BadOutcome as e:
            self._fail(lease, step, final=True, error=str(e))
        return None

    def _lost(self, lease: Lease, step: Step) -> None:
        logger.warning("lost instance %s to another runner during step %s; outcome dropped",
                       self.row.instance, step.name,
                       extra={"action": "lease_lost", **self._context(lease, step)})

    def _advance(self, conn: Conn, lease: Lease, step: Step,
                 result: object) -> tuple[Step, str, Lease] | None:
        """Write the step's outcome on *conn* (inside the caller's transaction)."""
        store = self.store
        if isinstance(result, Continuation):
            following = result.step
            if following.saga is not self.saga:
                raise _BadOutcome(
                    f"step {step.name!r} continued with step {following.name!r} of saga "
                    f"{following.saga.name!r}: a saga can only continue with its own steps")
            if result.state is not None:
                self.state_text = result.state
            if result.delay == 0 and not self.stopping.is_set():
                status = self._check(store.run_on(conn, lease, following.name, result.input,
                                                  result.state))
                if status == Status.RUNNING:
                    return following, result.input, lease._replace(attempt=1)
            else:
                status = self._check(store.schedule(conn, lease, following.name, result.input,
                                                    result.state, result.delay))
            if status == Status.CANCELLED:
                self._cancelled(lease, following)
            return None
        try:
            encoded = None if result is None else self.saga.codec.encode(result)
        except TypeError as e:
            raise _BadOutcome(f"step {step.name!r} returned a final state that cannot be "
                              f"stored: {e}") from e
        self._check(store.complete(conn, lease, encoded))
        self.stats.add(completed=1)
        logger.debug("instance %s complete after step %s", self.row.instance, step.name,
                     extra={"action": "complete", **self._context(lease, step)})
        return None

    def _context(self, lease: Lease, step: Step) -> dict[str, object]:
        """What every log record about this instance carries (see saga.logs)."""
        return {"saga": self.saga.name, "instance": self.row.instance, "id": lease.id,
                "step": step.name, "attempt": lease.attempt, "runner": self.runner_id}

    @staticmethod
    def _check(status: int | None) -> int:
        if status is None:
            raise _LeaseLost
        return status

    def _cancelled(self, lease: Lease, following: Step) -> None:
        self.stats.add(cancelled=1)
        logger.info("instance %s cancelled before step %s", self.row.instance, following.name,
                    extra={"action": "cancelled", **self._context(lease, following)})

    def _fail(self, lease: Lease, step: Step, *, final: bool, error: str) -> None:
        delay = 0.0 if final else backoff(self.saga, lease.attempt)
        error = error.replace("\x00", "\\x00")  # text columns cannot hold NUL
        status = self._write(lambda conn: self.store.fail(conn, lease, error=error, final=final,
                                                          delay=delay))
        if status is None:
            return
        if status == Status.CANCELLED:
            self._cancelled(lease, step)
            return
        last_line = next((line for line in reversed(error.splitlines()) if line.strip()), "")
        extra = self._context(lease, step)
        if final:
            self.stats.add(failed=1)
            logger.error("instance %s failed in step %s: %s", self.row.instance, step.name,
                         last_line, extra={"action": "error", **extra})
        else:
            self.stats.add(retried=1)
            logger.warning("step %s of instance %s failed (attempt %d), retry in %.1fs: %s",
                           step.name, self.row.instance, lease.attempt, delay,
                           last_line, extra={"action": "retry", **extra})

    def _set_state_for(self, lease: Lease, step: Step) -> Any:
        """The `set_state` a step receives: a checkpoint committed at once, lease-guarded."""
        def set_state(state: object) -> None:
            text = step.encode_state(state)  # TypeError here, in the step, if it won't do
            if step.wants_conn:
                # The thread's connection is inside the step's transaction: checkpoint on
                # another one, so that the state survives the step's failure.
                with self.pool.connection() as other, other.transaction():
                    written = self.store.set_state(other, lease, text)
            else:
                written = self._write(lambda conn: self.store.set_state(conn, lease, text))
            if not written:
                raise ConcurrencyException(
                    f"instance {self.row.instance!r} is no longer owned by this runner")
            self.state_text = text
        return set_state


    def _usable(self, timeout: float | None = None) -> Conn:
        """The thread's connection, or a fresh pooled one if it broke."""
        if self.conn.broken or self.conn.closed:
            self._spare.close()  # a replacement that broke in turn goes back now
            self.conn = borrow(self.pool, timeout)
            self._spare.callback(give_back, self.pool, self.conn)
        return self.conn

    def _write(self, write: Callable[[Conn], T]) -> T:
        """Run *write* (one statement) in a transaction of its own; after a connection
        failure, retry on a fresh connection until `patience` runs out.

        The lease makes a repeated write harmless, and a step that finished should not
        run again because the database blinked while it ran.
        """
        deadline = time.monotonic() + self.patience
        pause = 0.05
        while True:
            try:
                conn = self._usable(timeout=max(0.1, deadline - time.monotonic()))
                return write(conn)  # one statement, autocommitted: its own transaction
            except PoolClosed:
                raise  # the runner is being shut down under us
            except (psycopg.OperationalError, PoolTimeout):
                if not (self.conn.broken or self.conn.closed) or time.monotonic() > deadline:
                    raise  # not the connection (a timeout, say), or out of patience
                logger.warning("connection lost while recording instance %s; retrying",
                               self.row.instance, extra={
                                   "action": "write_retry", "saga": self.saga.name,
                                   "instance": self.row.instance, "id": self.row.id,
                                   "runner": self.runner_id})
            _PAUSE.wait(pause)
            pause = min(2 * pause, 1.0)


def backoff(saga: Saga, attempt: int) -> float:
    """Seconds before retry number *attempt*: exponential from `backoff_base`, capped, jittered."""
    delay = min(saga.backoff_max, saga.backoff_base * 2.0 ** min(attempt - 1, 62))
    return delay * random.uniform(0.75, 1.0)  # jitter, not cryptography
