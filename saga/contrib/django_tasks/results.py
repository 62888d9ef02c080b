"""What a task is as a saga row, and back: the input at enqueue, the `TaskResult` read.

A task is a one-step saga instance. Its instance id is the result id; its step is the
task's queue name; its input is ``{"task": path, "args": [...], "kwargs": {...},
"run_after": iso | null}``; its state is the attempt log the worker keeps (see
`execute`), which on success also holds the return value under ``"return_value"``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Final

from saga import Instance, Status

from ._compat import Task, TaskError, TaskResult, TaskResultStatus, normalize_json

STATUSES: Final = {
    Status.PENDING: TaskResultStatus.READY,
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.COMPLETE: TaskResultStatus.SUCCESSFUL,
    Status.ERROR: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}


def storable(value: object, what: str) -> Any:
    """Return *value* as the framework normalises it (tuples become lists, ...), checked
    to be storable as JSON; raise `TypeError` naming *what* otherwise."""
    try:
        normal = normalize_json(value)
        json.dumps(normal, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} cannot be stored as JSON: {e}") from None
    return normal


def task_input(
    task: Any, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The stored input of *task* called with *args* and *kwargs*; `TypeError` (naming the
    argument) for a value that JSON cannot hold, at enqueue rather than in the worker."""
    path = task.module_path
    stored_args = [storable(a, f"argument {i} of task {path!r}") for i, a in enumerate(args)]
    stored_kwargs = {}
    for name, value in kwargs.items():
        if not isinstance(name, str):
            raise TypeError(f"task {path!r}: keyword argument names must be strings, got {name!r}")
        stored_kwargs[name] = storable(value, f"keyword argument {name!r} of task {path!r}")
    run_after = task.run_after.isoformat() if task.run_after is not None else None
    return {"task": path, "args": stored_args, "kwargs": stored_kwargs, "run_after": run_after}


def load_task(path: object) -> Any:
    """The `Task` object at *path* (a module-level `@task`); `ValueError` if there is none."""
    from django.utils.module_loading import import_string  # type: ignore[import-untyped, unused-ignore]

    if not isinstance(path, str):
        raise ValueError(f"the stored task path must be a string, got {path!r}")
    try:
        found = import_string(path)
    except ImportError as e:
        raise ValueError(f"cannot import task {path!r}: {e}") from e
    if not isinstance(found, Task):
        raise ValueError(f"{path!r} is a {type(found).__name__}, not a task (@task)")
    return found


def stored_task(payload: dict[str, Any], queue: str, alias: str) -> Any:
    """The enqueued `Task`: the one at the stored path, with its queue, run_after, backend."""
    run_after = payload.get("run_after")
    return load_task(payload.get("task")).using(
        queue_name=queue, backend=alias,
        run_after=datetime.fromisoformat(run_after) if run_after else None)


def _when(log: dict[str, Any], key: str) -> datetime | None:
    text = log.get(key)
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def to_result(record: Instance, alias: str, task: Any = None) -> Any:
    """The `TaskResult` of the task stored as *record* (*task* if known, else loaded)."""
    payload = record.input if isinstance(record.input, dict) else {}
    log = record.state if isinstance(record.state, dict) else {}
    if task is None:
        task = stored_task(payload, record.step, alias)
    status = STATUSES[record.status]
    errors = [TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
              for e in log.get("errors", [])]
    worker_ids = list(log.get("worker_ids", []))
    if status == TaskResultStatus.FAILED and log.get("failed_at_attempt") != len(worker_ids):
        # The row ended in ERROR (or CANCELLED) without the task raising a last time: its
        # runner died once too often, or it was cancelled. pgsaga's own message says why.
        errors.append(TaskError(exception_class_path="saga.SagaException",
                                traceback=record.error or f"the instance was {record.status.name}"))
    result = TaskResult(
        task=task, id=record.instance, status=status,
        enqueued_at=record.created_at,
        started_at=_when(log, "started_at"),
        last_attempted_at=_when(log, "last_attempted_at"),
        finished_at=record.updated_at if record.status.finished else None,
        args=payload.get("args", []), kwargs=payload.get("kwargs", {}),
        backend=alias, errors=errors, worker_ids=worker_ids,
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", log.get("return_value"))
    return result
