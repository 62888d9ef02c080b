"""saga.contrib.django_tasks: Django's tasks framework on pgsaga.

Django can be set up once per process and tests/test_django.py sets it up with other
settings, so each suite of tests/apps/tasks_site runs in a child pytest process of this
interpreter, on this session's PostgreSQL. (`.ci/run` runs this module again on
Python >= 3.12 with Django 6's own `django.tasks`; here, the installed framework.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITES = ROOT / "tests" / "apps" / "tasks_site"


def run_suite(dsn: str, names: list[str], marker: str) -> None:
    """Run `tests/apps/tasks_site/<names>` in one child pytest; fail with its report."""
    env = {**os.environ, "SAGA_TEST_DSN": dsn}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *(str(SUITES / n) for n in names), "-q",
         "-p", "no:cacheprovider",
         "-m", marker, "-o", "addopts=-ra --strict-markers"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{', '.join(names)} failed (exit {proc.returncode}):\n{proc.stdout[-12000:]}\n"
                    f"{proc.stderr[-4000:]}", pytrace=False)


@pytest.mark.timeout(600)
def test_backend_and_worker(dsn: str) -> None:
    """The contract, the view, worker processes: tests.apps.tasks_site's settings."""
    run_suite(dsn, ["suite_backend.py", "suite_worker.py"], "not slow")


@pytest.mark.timeout(600)
def test_example(dsn: str) -> None:
    """examples/django_app's task: the example's settings, so a process of its own."""
    run_suite(dsn, ["suite_example.py"], "not slow")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_during_a_task(dsn: str) -> None:
    run_suite(dsn, ["suite_kill.py"], "slow")
