"""`Backend`: Django's tasks framework on pgsaga. Each task is a one-step saga instance.

    TASKS = {"default": {
        "BACKEND": "saga.contrib.django_tasks.Backend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"DATABASE": "default", "SCHEMA": "saga", "MAX_ATTEMPTS": 5},
    }}

Without SCHEMA, the schema is the one a `Saga` that names none uses (SAGA_SCHEMA, else
saga). Enqueue writes the row on Django's own connection of the `DATABASE` alias, so inside
`transaction.atomic()` the task exists only if the block commits. With a `DSN` instead,
the backend has a pool of its own and each enqueue commits at once.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import psycopg

from saga import Saga, SagaNotFound, Step
from saga.core import BACKOFF_BASE, BACKOFF_MAX, MAX_ATTEMPTS, default_schema

from ._compat import BaseTaskBackend, TaskResultDoesNotExist, task_enqueued
from .execute import run_task
from .results import task_input, to_result

OPTION_NAMES: Final = frozenset(
    {"DATABASE", "DSN", "SCHEMA", "SAGA_NAME", "MAX_ATTEMPTS", "BACKOFF_BASE", "BACKOFF_MAX"})

# Keys of Django's connection parameters that are psycopg's, not libpq's.
_NOT_LIBPQ: Final = frozenset({"cursor_factory", "context", "prepare_threshold"})

# Django makes a backend per thread (its handler is thread-local); they share one Saga per
# configuration, so that a DSN backend has one pool per process, not one per thread.
_SHARED: dict[tuple[object, ...], Saga] = {}
_SHARED_LOCK = threading.Lock()  # guards _SHARED and the steps of the sagas in it


class Backend(BaseTaskBackend):  # type: ignore[misc]  # the framework is untyped here
    """A `TASKS` backend whose tasks pgsaga's worker runs (`manage.py saga_worker`).

    Supports `run_after` (a delay on the database clock), queue names (a worker serves
    the queues it is given), result retrieval from any process, async task functions and
    `takes_context`. Not priority: pgsaga claims due rows oldest first, so a task with a
    priority other than the default is refused at `@task`/`.using()` time.
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped, unused-ignore]

        super().__init__(alias, params)
        options = dict(self.options)
        unknown = sorted(set(options) - OPTION_NAMES)
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: unknown option(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(OPTION_NAMES))})")
        if "DSN" in options and "DATABASE" in options:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: give DATABASE (a Django alias) or DSN, not both")
        self.dsn: str | None = options.get("DSN")
        self.database: str | None = None if self.dsn else options.get("DATABASE", "default")
        self.saga_name: str = options.get("SAGA_NAME", f"django_tasks.{alias}")
        schema = options.get("SCHEMA")
        if schema is None:  # the schema a `Saga` that names none uses: SAGA_SCHEMA, else saga
            try:
                schema = default_schema()
            except ValueError as e:
                raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: no SCHEMA, and {e}"
                                           ) from e
        self._settings = {
            "schema": schema,
            "max_attempts": options.get("MAX_ATTEMPTS", MAX_ATTEMPTS),
            "backoff_base": options.get("BACKOFF_BASE", BACKOFF_BASE),
            "backoff_max": options.get("BACKOFF_MAX", BACKOFF_MAX),
        }
        key = (self.saga_name, self.dsn, *sorted(self._settings.items()))
        with _SHARED_LOCK:
            try:  # check the options now, naming the backend, rather than at the first enqueue
                self.saga = _SHARED.get(key) or _SHARED.setdefault(key, self._new_saga(self.dsn))
            except (TypeError, ValueError) as e:
                raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {e}") from e
        for queue in sorted(self.queues):
            self._step(queue)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.alias!r} saga={self.saga_name!r} "
                f"schema={self.saga.schema!r} queues={sorted(self.queues)}>")

    # -- the framework's contract --------------------------------------------------------

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Store *task* with *args* and *kwargs* as a saga instance; return its result.

        Raise `TypeError` for an argument that cannot be stored as JSON. On the Django
        connection (the default) it joins the caller's `transaction.atomic()` block.
        """
        self.validate_task(task)
        payload = task_input(task, args, kwargs)
        result_id = uuid.uuid4().hex
        delay = None
        if task.run_after is not None:
            from django.utils import timezone  # type: ignore[import-untyped, unused-ignore]

            # The delay counts on the database clock from here: skew between this
            # machine's clock and the database's shifts run_after by as much.
            delay = max(0.0, (task.run_after - timezone.now()).total_seconds())
        with self._connection() as conn:
            self.saga.start(result_id, self._step(task.queue_name), payload, delay=delay,
                            conn=conn)
            record = self.saga.get(result_id, conn=conn)
        result = to_result(record, self.alias, task)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """Read the task *result_id* as it is now; raise `TaskResultDoesNotExist` if unknown."""
        if not isinstance(result_id, str) or not result_id:
            raise TaskResultDoesNotExist(result_id)
        try:
            with self._connection() as conn:
                record = self.saga.get(result_id, conn=conn)
        except (SagaNotFound, ValueError) as e:  # ValueError: not a possible instance id
            raise TaskResultDoesNotExist(result_id) from e
        return to_result(record, self.alias)

    def check(self, **kwargs: Any) -> Iterable[Any]:
        """Django's system checks: the DATABASE alias must be PostgreSQL (on psycopg 3)."""
        from django.core import checks  # type: ignore[import-untyped, unused-ignore]
        from django.db import connections  # type: ignore[import-untyped, unused-ignore]

        yield from super().check(**kwargs)
        if self.database is None:
            return
        if self.database not in connections.settings:
            yield checks.Error(f"tasks backend {self.alias!r}: DATABASE {self.database!r} is "
                               "not in DATABASES", id="saga_tasks.E001")
        elif connections[self.database].vendor != "postgresql":
            yield checks.Error(
                f"tasks backend {self.alias!r}: DATABASE {self.database!r} is not PostgreSQL",
                hint="use django.db.backends.postgresql, or give the backend a DSN",
                id="saga_tasks.E002")

    # -- the worker's side ---------------------------------------------------------------

    def worker_saga(self, queues: Iterable[str] | None = None) -> Saga:
        """A new `Saga` whose steps run this backend's tasks of *queues* (default: QUEUES),
        on the backend's DSN, else on its Django database's settings."""
        chosen = sorted(self.queues if queues is None else set(queues))
        if not chosen:
            raise ValueError(f"tasks backend {self.alias!r} has no QUEUES: name the queues "
                             "to serve (manage.py saga_worker --queue NAME)")
        worker = self._new_saga(self.dsn or dsn_of(self.database or "default"))
        for queue in chosen:
            if self.queues and queue not in self.queues:
                raise ValueError(f"queue {queue!r} is not among the QUEUES of tasks backend "
                                 f"{self.alias!r}: {sorted(self.queues)}")
            worker.step(_queue_step(queue, self, worker))
        return worker

    # -- internals -----------------------------------------------------------------------

    def _new_saga(self, dsn: str | None) -> Saga:
        return Saga(self.saga_name, dsn, **self._settings)

    def _step(self, queue: str) -> Step:
        """The step of *queue* on the backend's saga, registered on first use (with
        `QUEUES = []` any queue name is valid)."""
        with _SHARED_LOCK:
            found = self.saga.steps.get(queue)
            if found is None:
                found = self.saga.step(_queue_step(queue, self, self.saga))
            return found

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any] | None]:
        """Django's connection of the DATABASE alias as it is (in the caller's atomic block,
        or autocommit); None with a DSN, for the saga's own pool."""
        if self.database is None:
            yield None
            return
        from saga.contrib.django import connection

        yield connection(self.database, atomic=False)


def _queue_step(queue: str, backend: Backend, saga: Saga) -> Any:
    """The step function of *queue*: run one attempt of the stored task."""
    def step(input: object, state: object, set_state: Any, logger: Any) -> object:
        return run_task(backend, saga, input, state, set_state, logger)
    step.__name__ = step.__qualname__ = queue
    return step


def dsn_of(alias: str) -> str:
    """A libpq connection string for Django's database *alias* (what the worker connects to)."""
    from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped, unused-ignore]
    from django.db import connections  # type: ignore[import-untyped, unused-ignore]
    from psycopg.conninfo import make_conninfo

    wrapper = connections[alias]
    if wrapper.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"database {alias!r} is {wrapper.settings_dict['ENGINE']!r}, not PostgreSQL")
    params = {k: v for k, v in wrapper.get_connection_params().items()
              if k not in _NOT_LIBPQ and v is not None}
    return make_conninfo("", **params)
