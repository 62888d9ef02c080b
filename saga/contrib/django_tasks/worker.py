"""Worker targets for `python -m saga.worker`, with `django.setup()` done on import.

    DJANGO_SETTINGS_MODULE=mysite.settings python -m saga.worker \\
        saga.contrib.django_tasks.worker:sagas              # every queue of every backend
    ... saga.contrib.django_tasks.worker:queues.emails,sms   # only these queues

`sagas` is a saga per pgsaga backend in `TASKS`, with a step per queue of its `QUEUES`;
`queues.<names>` (comma-separated) is the same limited to the named queues, on every
backend that has them. A worker claims only the steps it has: that is the queue flag.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from saga import Saga

logger = logging.getLogger(__name__)


def _setup() -> None:
    """`django.setup()` unless Django is set up already (as under `manage.py`)."""
    import django  # type: ignore[import-untyped, unused-ignore]
    from django.apps import apps  # type: ignore[import-untyped, unused-ignore]
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped, unused-ignore]

    if apps.ready:
        return
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ImproperlyConfigured(
            "set DJANGO_SETTINGS_MODULE to the project's settings module, e.g. "
            "DJANGO_SETTINGS_MODULE=mysite.settings python -m saga.worker "
            "saga.contrib.django_tasks.worker:sagas")
    django.setup()


def backends() -> list[Any]:
    """The pgsaga backends configured in `TASKS`, by alias."""
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]

    from ._compat import task_backends
    from .backend import Backend

    found = [task_backends[alias] for alias in getattr(settings, "TASKS", {})]
    return [b for b in found if isinstance(b, Backend)]


def select(names: list[str] | None) -> list[Saga]:
    """The worker sagas of the queues *names* (None: each backend's QUEUES), made once."""
    key = None if names is None else tuple(names)
    if key not in _selected:
        _selected[key] = _select(names)
    return _selected[key]


def _select(names: list[str] | None) -> list[Saga]:
    chosen = []
    for backend in backends():
        if names is None:
            if not backend.queues:  # any queue name goes: only `queues.<names>` can serve it
                logger.warning("tasks backend %r has QUEUES = []: serve its queues with "
                               "queues.<names> (manage.py saga_worker --queue NAME)",
                               backend.alias, extra={"action": "no_queues"})
                continue
            chosen.append(backend.worker_saga())
        else:
            mine = [n for n in names if not backend.queues or n in backend.queues]
            if mine:
                chosen.append(backend.worker_saga(mine))
    if not chosen:
        what = "no tasks backend is saga.contrib.django_tasks.Backend" if names is None else (
            f"no pgsaga tasks backend has the queue(s) {', '.join(names)}")
        raise LookupError(what)
    return chosen


def _target(what: str, names: list[str] | None) -> list[Saga]:
    """`select()` for a worker target: an attribute lookup may raise AttributeError only,
    so the reason rides along as its cause (the worker prints that one line)."""
    try:
        return select(names)
    except (LookupError, ValueError) as e:
        raise AttributeError(f"{what}: {e}") from e


class _Queues:
    """`queues.<a,b>`: the worker sagas of those queues, for a worker target."""

    def __getattr__(self, names: str) -> list[Saga]:
        if names.startswith("__"):
            raise AttributeError(names)
        return _target(f"queues.{names}", [n for n in names.split(",") if n])


def __getattr__(name: str) -> list[Saga]:
    """`sagas`, made when a worker asks for it (a project may have no QUEUES to serve
    but those it names with `queues.<names>`)."""
    if name == "sagas":
        return _target("sagas", None)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_selected: dict[tuple[str, ...] | None, list[Saga]] = {}
_setup()
queues = _Queues()
