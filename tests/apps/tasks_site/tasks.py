"""The tasks of the test project (module-level `@task` functions, as the framework wants)."""

from __future__ import annotations

import os
import time

from django.db import connection

from saga import SagaError
from saga.contrib.django_tasks._compat import FRAMEWORK

if FRAMEWORK == "django.tasks":
    from django.tasks import task
else:
    from django_tasks import task

from .models import Note


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def echo(*args: object, **kwargs: object) -> dict[str, object]:
    return {"args": list(args), "kwargs": kwargs}


@task(queue_name="emails")
def send_email(to: str) -> str:
    return f"sent to {to}"


@task(takes_context=True)
def flaky(context: object, failures: int) -> dict[str, object]:
    """Fail the first *failures* attempts, then succeed."""
    attempt = context.attempt  # type: ignore[attr-defined]
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} fails")
    return {"attempt": attempt, "id": context.task_result.id}  # type: ignore[attr-defined]


@task()
def always_fails() -> None:
    raise ValueError("this task always fails")


@task()
def gives_up() -> None:
    raise SagaError("no point in trying again")


@task()
def exits() -> None:
    raise SystemExit(3)


@task()
def returns_unstorable() -> object:
    return object()


@task()
async def add_async(a: int, b: int) -> int:
    return a + b


@task()
def write_note(text: str) -> dict[str, int]:
    """Write through the ORM; return the row and the server process of the connection."""
    note = Note.objects.create(text=text)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return {"note": note.pk, "pid": pid}


@task()
def leave_transaction_open(text: str) -> None:
    """Leave the thread's ORM connection in a transaction, as a careless task might."""
    connection.set_autocommit(False)
    Note.objects.create(text=text)


@task()
def slow(text: str, seconds: float) -> dict[str, object]:
    """Log a start (committed at once), then take *seconds*: a task to kill a worker in."""
    Note.objects.create(text=f"{text} started in {os.getpid()}")
    time.sleep(seconds)
    return {"text": text, "pid": os.getpid()}
