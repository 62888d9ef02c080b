"""The backend against the framework's contract, as its documentation and Django's own
tests/tasks state it for any backend (enqueue, get_result, refresh, errors, context,
validation), with tasks run by a worker in this process. Run by tests/test_django_tasks.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from saga import SagaError
from saga.contrib.django_tasks import Backend
from saga.contrib.django_tasks._compat import (
    FRAMEWORK,
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from tests.apps.tasks_site.conftest import LazyTasks, Site
from tests.helpers import wait_until

pytestmark = pytest.mark.usefixtures("clean")
tasks: Any = LazyTasks()

if FRAMEWORK == "django.tasks":
    from django.tasks.exceptions import TaskResultMismatch
else:
    from django_tasks.exceptions import TaskResultMismatch


def run_until(finished: Callable[[], bool], alias: str = "default",
              queues: list[str] | None = None, timeout: float = 10.0) -> None:
    """Drain the backend's worker saga in this process until *finished* (retries wait)."""
    saga = task_backends[alias].worker_saga(queues)
    try:
        wait_until(lambda: saga.run(workers=2, drain=True) and finished(), timeout)
    finally:
        saga.close()


def finished(result: Any) -> Callable[[], bool]:
    def check() -> bool:
        result.refresh()
        return bool(result.is_finished)
    return check


def test_the_backend_is_configured() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, Backend)
    assert backend.alias == "default"
    assert backend.queues == {"default", "emails"}
    assert backend.supports_defer
    assert backend.supports_get_result
    assert backend.supports_async_task
    assert not backend.supports_priority
    assert repr(backend).startswith("<Backend 'default' saga='django_tasks.default'")


def test_enqueue_returns_a_ready_result() -> None:
    result = tasks.echo.enqueue(1, (2, 3), key="value")
    assert result.status == TaskResultStatus.READY
    assert result.task == tasks.echo
    assert result.args == [1, [2, 3]]  # normalised as the framework does
    assert result.kwargs == {"key": "value"}
    assert result.backend == "default"
    assert isinstance(result.id, str)
    assert len(result.id) == 32
    assert result.enqueued_at is not None
    assert result.enqueued_at.tzinfo is not None
    assert result.started_at is None
    assert result.finished_at is None
    assert not result.is_finished
    assert result.attempts == 0
    assert result.errors == []
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value


def test_aenqueue_and_aget_result() -> None:
    async def go() -> tuple[Any, Any]:
        result = await tasks.add.aenqueue(1, 2)
        return result, await tasks.add.aget_result(result.id)

    result, again = asyncio.run(go())
    assert result.status == TaskResultStatus.READY
    assert again == result


def test_get_result_equals_the_enqueued_result() -> None:
    result = task_backends["default"].enqueue(tasks.add, (1, 2), {})
    assert tasks.add.get_result(result.id) == result
    assert task_backends["default"].get_result(result.id) == result


@pytest.mark.parametrize("result_id", ["123", "", "x" * 600, "0" * 32])
def test_get_missing_result(result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result_id)


def test_get_result_of_another_task() -> None:
    result = tasks.echo.enqueue()
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        tasks.add.get_result(result.id)


@pytest.mark.skipif(FRAMEWORK != "django.tasks",
                    reason="the backport's Task does not pickle (Django 6's has __reduce__)")
def test_a_result_pickles() -> None:
    result = tasks.add.enqueue(1, 2)
    assert pickle.loads(pickle.dumps(result)) == result


@pytest.mark.parametrize(("args", "kwargs", "named"), [
    ((datetime.now(),), {}, "argument 0"),
    ((1, {"a": {1, 2}}), {}, "argument 1"),
    ((), {"when": object()}, "keyword argument 'when'"),
    ((float("nan"),), {}, "argument 0"),
])
def test_arguments_that_cannot_be_stored(site: Site, args: tuple[Any, ...],
                                         kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(TypeError, match=rf"{named} of task '.*echo' cannot be stored as JSON"):
        tasks.echo.enqueue(*args, **kwargs)
    assert site.db.one("SELECT count(*) FROM {s}.instance") == 0


def test_validation_at_using_time() -> None:
    with pytest.raises(InvalidTask, match="does not support setting priority"):
        tasks.add.using(priority=1)
    with pytest.raises(InvalidTask, match="Queue 'nope' is not valid for backend"):
        tasks.add.using(queue_name="nope")
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        tasks.add.using(run_after=datetime.now())
    # QUEUES = [] takes any queue name.
    assert tasks.add.using(backend="own_pool", queue_name="nope").queue_name == "nope"


def test_a_task_runs_and_its_result_is_read_back() -> None:
    received: list[tuple[str, Any]] = []

    def receiver(name: str) -> Callable[..., None]:
        def on(sender: object, task_result: Any, **kwargs: object) -> None:
            received.append((name, task_result.status))
        return on

    receivers = {signal: receiver(name) for signal, name in [
        (task_enqueued, "enqueued"), (task_started, "started"), (task_finished, "finished")]}
    for signal, on in receivers.items():
        signal.connect(on)
    try:
        result = tasks.add.enqueue(2, 3)
        run_until(finished(result))
    finally:
        for signal, on in receivers.items():
            signal.disconnect(on)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.attempts == 1
    assert len(result.worker_ids) == 1
    assert result.errors == []
    assert result.enqueued_at <= result.started_at <= result.last_attempted_at
    assert result.started_at <= result.finished_at
    assert [name for name, _ in received] == ["enqueued", "started", "finished"]
    assert received[-1][1] == TaskResultStatus.SUCCESSFUL


def test_an_async_task_runs() -> None:
    result = tasks.add_async.enqueue(20, 22)
    run_until(finished(result))
    assert result.return_value == 42


def test_context_gives_the_result_and_the_attempt() -> None:
    result = tasks.flaky.enqueue(failures=0)
    run_until(finished(result))
    assert result.return_value == {"attempt": 1, "id": result.id}


def test_a_task_that_fails_twice_then_succeeds() -> None:
    result = tasks.flaky.enqueue(failures=2)  # MAX_ATTEMPTS is 3 in the test settings
    run_until(finished(result))
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 3, "id": result.id}
    assert result.attempts == 3
    assert [e.exception_class for e in result.errors] == [RuntimeError, RuntimeError]
    assert "attempt 2 fails" in result.errors[1].traceback


def test_a_task_that_keeps_failing_fails_after_max_attempts(site: Site) -> None:
    result = tasks.always_fails.enqueue()
    run_until(finished(result))
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"] * 3
    assert "this task always fails" in result.errors[-1].traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert site.db.row(result.id)["status"] == 3  # ERROR: pgsaga's dead letter, retryable


def test_saga_error_fails_for_good_at_once() -> None:
    result = tasks.gives_up.enqueue()
    run_until(finished(result))
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1
    assert result.errors[0].exception_class is SagaError


def test_system_exit_fails_the_attempt_not_the_worker() -> None:
    result = tasks.exits.enqueue()
    after = tasks.add.enqueue(1, 1)
    run_until(lambda: finished(result)() and finished(after)())
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 3
    assert result.errors[0].exception_class is SystemExit
    assert after.return_value == 2


def test_a_return_value_that_cannot_be_stored_fails_at_once() -> None:
    result = tasks.returns_unstorable.enqueue()
    run_until(finished(result))
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1
    assert "the return value of task" in result.errors[0].traceback


def test_run_after_delays_the_task(site: Site) -> None:
    from django.utils import timezone

    when = timezone.now() + timedelta(hours=1)
    result = tasks.add.using(run_after=when).enqueue(1, 2)
    assert result.task.run_after == when
    assert tasks.add.get_result(result.id).task.run_after == when
    run_after = site.db.row(result.id)["run_after"]
    assert abs((run_after - when).total_seconds()) < 5  # the database clock's delay
    saga = task_backends["default"].worker_saga()
    try:
        assert saga.run(workers=1, drain=True).steps == 0  # not due
    finally:
        saga.close()
    site.db.make_due(result.id)
    run_until(finished(result))
    assert result.return_value == 3


def test_queues_are_steps_a_worker_selects(site: Site) -> None:
    email = tasks.send_email.enqueue("ann@example.com")
    other = tasks.add.enqueue(1, 2)
    assert site.db.row(email.id)["step"] == "emails"
    run_until(finished(email), queues=["emails"])
    assert email.return_value == "sent to ann@example.com"
    other.refresh()
    assert other.status == TaskResultStatus.READY


def test_refresh_and_get_result_agree() -> None:
    result = tasks.add.enqueue(1, 2)
    run_until(finished(result))
    again = tasks.add.get_result(result.id)
    assert dataclasses.asdict(again) == dataclasses.asdict(result)


def test_enqueue_joins_the_callers_transaction(site: Site) -> None:
    from django.db import transaction

    with transaction.atomic():
        rolled_back = tasks.add.enqueue(1, 2)
        assert tasks.add.get_result(rolled_back.id) == rolled_back  # visible inside
        transaction.set_rollback(True)
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(rolled_back.id)
    with transaction.atomic():
        kept = tasks.add.enqueue(1, 2)
    assert tasks.add.get_result(kept.id).status == TaskResultStatus.READY


def test_a_dsn_backend_commits_on_its_own(site: Site) -> None:
    from django.db import transaction

    on_own_pool = tasks.add.using(backend="own_pool", queue_name="bulk")

    with transaction.atomic():
        result = on_own_pool.enqueue(1, 2)
        transaction.set_rollback(True)
    assert on_own_pool.get_result(result.id).status == TaskResultStatus.READY
    run_until(finished(result), alias="own_pool", queues=["bulk"])
    assert result.return_value == 3


@pytest.mark.parametrize(("options", "message"), [
    ({"NOPE": 1}, "unknown option.s. NOPE"),
    ({"DSN": "dbname=x", "DATABASE": "default"}, "give DATABASE .* or DSN, not both"),
    ({"MAX_ATTEMPTS": 0}, "max_attempts must be an integer >= 1"),
    ({"SCHEMA": "no such"}, "schema"),
])
def test_bad_options_are_refused_naming_the_backend(options: dict[str, Any],
                                                    message: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=rf"TASKS\['broken'\]\['OPTIONS'\]: {message}"):
        Backend("broken", {"OPTIONS": options})


def test_without_schema_the_backend_reads_saga_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("SAGA_SCHEMA", "elsewhere")
    assert Backend("plain", {"OPTIONS": {}}).saga.schema == "elsewhere"
    assert Backend("named", {"OPTIONS": {"SCHEMA": "mine"}}).saga.schema == "mine"
    monkeypatch.setenv("SAGA_SCHEMA", "no such")
    with pytest.raises(ImproperlyConfigured, match=r"TASKS\['bad'\]\['OPTIONS'\]: no SCHEMA, "
                       "and SAGA_SCHEMA: "):
        Backend("bad", {"OPTIONS": {}})
    monkeypatch.delenv("SAGA_SCHEMA")
    assert Backend("bare", {"OPTIONS": {}}).saga.schema == "saga"


def test_system_checks() -> None:
    assert list(task_backends["default"].check()) == []
    missing = Backend("missing", {"OPTIONS": {"DATABASE": "other"}})
    assert [e.id for e in missing.check()] == ["saga_tasks.E001"]


def test_backends_of_all_threads_share_one_saga() -> None:
    import threading

    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(task_backends["own_pool"]))
    thread.start()
    thread.join()
    assert found[0] is not task_backends["own_pool"]  # Django's handler is thread-local
    assert found[0].saga is task_backends["own_pool"].saga  # one pool per process


def test_a_task_this_worker_cannot_import_is_retried_then_failed(site: Site) -> None:
    """As after a deploy that removed it, or before this worker's deploy added it."""
    from saga.contrib.django import connection

    backend = task_backends["default"]
    backend.saga.start("gone", "default", {"task": "tests.apps.tasks_site.tasks.gone",
                                           "args": [], "kwargs": {}, "run_after": None},
                       conn=connection(atomic=False))
    run_until(lambda: site.db.row("gone")["status"] == 3)
    state = site.db.row("gone")["state"]
    assert len(state["worker_ids"]) == 3
    last = state["errors"][-1]["traceback"]
    assert "cannot import task 'tests.apps.tasks_site.tasks.gone'" in last
    with pytest.raises(ValueError, match="cannot import task"):
        backend.get_result("gone")
