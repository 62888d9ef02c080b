"""`kill -9` of a worker while a task runs: another worker runs it again, and its result
is recorded once. Run by tests/test_django_tasks.py (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from saga.contrib.django_tasks._compat import TaskResultStatus
from tests.apps.tasks_site.conftest import ROOT, LazyTasks, Site
from tests.helpers import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean")]
tasks: Any = LazyTasks()


def start_worker(site: Site) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "saga.worker", "saga.contrib.django_tasks.worker:sagas",
         "--workers", "1", "--heartbeat-timeout", "2", "--poll-interval", "0.2"],
        cwd=ROOT, env=site.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def started(site: Site) -> list[str]:
    return [t for (t,) in site.db.rows("SELECT text FROM {s}.tasks_site_note ORDER BY id")]


def test_kill_9_during_a_task(site: Site) -> None:
    result = tasks.slow.enqueue("k", 3.0)
    first = start_worker(site)
    try:
        wait_until(lambda: started(site), timeout=30)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.communicate(timeout=10)
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING  # its runner is dead, not yet known
    second = start_worker(site)
    try:
        def done() -> bool:
            result.refresh()
            return bool(result.is_finished)
        wait_until(done, timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        output = second.communicate(timeout=30)[0]
    assert result.status == TaskResultStatus.SUCCESSFUL, output
    assert result.return_value == {"text": "k", "pid": second.pid}
    assert result.attempts == 2
    assert len(set(result.worker_ids)) == 2
    assert result.errors == []  # a killed attempt raises nothing
    assert started(site) == [f"k started in {first.pid}", f"k started in {second.pid}"]
    row = site.db.row(result.id)
    assert row["status"] == 2
    assert row["attempts"] == 2
    assert site.db.one("SELECT count(*) FROM {s}.instance") == 1
