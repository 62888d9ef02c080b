"""One attempt of a task, as the worker's step: the attempt log, the call, the outcome.

The step keeps an attempt log in the instance's state, written with `set_state` (a
checkpoint that commits at once, on its own): which runners took the task, when, and the
errors of failed attempts, because the row itself keeps only the current runner and the
last error. A kill -9 after the first checkpoint still leaves the attempt on record.
Success returns the log with the task's return value in it: the instance's final state.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from saga import Saga, SagaError

from ._compat import (
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    task_finished,
    task_started,
)
from .results import storable, stored_task

logger = logging.getLogger(__name__)


class TaskFailed(Exception):
    """A task raised a `BaseException` that is not an `Exception` (e.g. `SystemExit`):
    a failed attempt like any other, rather than the end of the worker's thread."""


def run_task(backend: Any, saga: Saga, input: object, state: object,
             set_state: Callable[[object], None], log: logging.LoggerAdapter[Any]) -> object:
    """Run one attempt of the task stored as *input*; return the final state on success.

    Raise `SagaError` (fail for good) for a return value that cannot be stored, and
    re-raise what the task raised (`LookupError` for a task this worker cannot import),
    for pgsaga's retry policy.
    """
    from django.db import close_old_connections  # type: ignore[import-untyped, unused-ignore]
    from django.utils import timezone  # type: ignore[import-untyped, unused-ignore]

    context = log.extra or {}
    result_id, attempt = str(context.get("instance")), int(str(context.get("attempt", 1)))
    payload = input if isinstance(input, dict) else {}
    attempts: dict[str, Any] = dict(state) if isinstance(state, dict) else {}
    now = timezone.now().isoformat()
    attempts["worker_ids"] = [*attempts.get("worker_ids", []), str(context.get("runner"))]
    attempts.setdefault("started_at", now)
    attempts["last_attempted_at"] = now
    attempts.setdefault("errors", [])
    set_state(attempts)  # this attempt is on record, whatever happens to the process next
    try:
        task = stored_task(payload, str(context.get("step")), backend.alias)
    except ValueError as e:
        # A worker of an older deploy may not know a new task: retried, as pgsaga's
        # steps are, so that a worker that knows it takes it (until MAX_ATTEMPTS).
        _record(attempts, e, set_state)
        raise LookupError(str(e)) from e
    result = _result(saga, task, result_id, payload, attempts, TaskResultStatus.RUNNING)
    task_started.send(sender=type(backend), task_result=result)
    # As around a request: drop ORM connections that are broken, in a transaction left
    # open, or older than CONN_MAX_AGE, before the task and after it.
    close_old_connections()
    try:
        args, kwargs = payload.get("args", []), payload.get("kwargs", {})
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        final = isinstance(e, SagaError) or attempt >= saga.max_attempts
        _failed(backend, saga, task, result_id, payload, attempts, e, set_state, final)
        if not isinstance(e, Exception):
            raise TaskFailed(f"{type(e).__name__}: {e}") from e
        raise
    finally:
        close_old_connections()
    try:
        attempts["return_value"] = storable(
            value, f"the return value of task {task.module_path!r}")
    except TypeError as e:  # the same value next time: fail for good, at once
        _failed(backend, saga, task, result_id, payload, attempts, e, set_state, True)
        raise SagaError(str(e)) from e
    done = _result(saga, task, result_id, payload, attempts, TaskResultStatus.SUCCESSFUL)
    object.__setattr__(done, "_return_value", attempts["return_value"])
    task_finished.send(sender=type(backend), task_result=done)
    return attempts


def _failed(backend: Any, saga: Saga, task: Any, result_id: str, payload: dict[str, Any],
            attempts: dict[str, Any], error: BaseException,
            set_state: Callable[[object], None], final: bool) -> None:
    """Add *error* to the attempt log (committed now); on a *final* failure, tell the
    framework's `task_finished` receivers, inside the `except` as they expect."""
    _record(attempts, error, set_state)
    if final:
        failed = _result(saga, task, result_id, payload, attempts, TaskResultStatus.FAILED)
        task_finished.send(sender=type(backend), task_result=failed)


def _record(attempts: dict[str, Any], error: BaseException,
            set_state: Callable[[object], None]) -> None:
    """Add *error* to the attempt log and checkpoint it (it survives the retry)."""
    kind = type(error)
    attempts["errors"] = [*attempts["errors"], {
        "exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
        "traceback": "".join(traceback.format_exception(error)),
    }]
    attempts["failed_at_attempt"] = len(attempts["worker_ids"])
    set_state(attempts)


def _result(saga: Saga, task: Any, result_id: str, payload: dict[str, Any],
            attempts: dict[str, Any], status: Any) -> Any:
    """The `TaskResult` the task's context and the framework's signals see in the worker."""
    from datetime import datetime

    from django.utils import timezone  # type: ignore[import-untyped, unused-ignore]

    return TaskResult(
        task=task, id=result_id, status=status, enqueued_at=None,
        started_at=datetime.fromisoformat(attempts["started_at"]),
        last_attempted_at=datetime.fromisoformat(attempts["last_attempted_at"]),
        finished_at=timezone.now() if status != TaskResultStatus.RUNNING else None,
        args=payload.get("args", []), kwargs=payload.get("kwargs", {}),
        backend=task.backend,
        errors=[TaskError(exception_class_path=e["exception_class_path"],
                          traceback=e["traceback"]) for e in attempts["errors"]],
        worker_ids=list(attempts["worker_ids"]),
    )
