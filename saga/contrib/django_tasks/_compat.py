"""The tasks framework's names, from Django (>= 6.0) or else the `django-tasks` backport.

Django 6 ships `django.tasks`; Django 4.2 to 5.2 get the same API from the backport
(import name `django_tasks`), whose exceptions carry other names. Everything else in this
package imports the framework from here, so the two never mix in one process.
"""

from __future__ import annotations

import importlib
from typing import Any


def _modules(root: str, names: tuple[str, ...]) -> list[Any]:
    return [importlib.import_module(f"{root}{n}") for n in names]


# Looked up by name: neither ships type hints that mypy can use here.
try:
    _tasks, _backends, _base, _exceptions, _signals, _json = _modules("django", (
        ".tasks", ".tasks.backends.base", ".tasks.base", ".tasks.exceptions", ".tasks.signals",
        ".utils.json"))
    FRAMEWORK = "django.tasks"
    InvalidTask: Any = _exceptions.InvalidTask
except ImportError:
    _tasks, _backends, _base, _exceptions, _signals, _json = _modules("django_tasks", (
        "", ".backends.base", ".base", ".exceptions", ".signals", ".utils"))
    FRAMEWORK = "django_tasks"
    InvalidTask = _exceptions.InvalidTaskError

BaseTaskBackend: Any = _backends.BaseTaskBackend
DEFAULT_TASK_PRIORITY: int = _base.DEFAULT_TASK_PRIORITY
DEFAULT_TASK_QUEUE_NAME: str = _tasks.DEFAULT_TASK_QUEUE_NAME
Task: Any = _base.Task
TaskContext: Any = _base.TaskContext
TaskError: Any = _base.TaskError
TaskResult: Any = _base.TaskResult
TaskResultDoesNotExist: Any = _exceptions.TaskResultDoesNotExist
TaskResultStatus: Any = _base.TaskResultStatus
normalize_json: Any = _json.normalize_json
task_backends: Any = _tasks.task_backends
task_enqueued: Any = _signals.task_enqueued
task_finished: Any = _signals.task_finished
task_started: Any = _signals.task_started

__all__ = [
    "DEFAULT_TASK_PRIORITY",
    "DEFAULT_TASK_QUEUE_NAME",
    "FRAMEWORK",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
