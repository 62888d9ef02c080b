"""Tasks enqueued from a view and run by worker processes (`python -m saga.worker` and
`manage.py saga_worker`), ORM connections between tasks, and the admin CLI on tasks.
Run by tests/test_django_tasks.py."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from saga.contrib.django_tasks._compat import (
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
)
from tests.apps.tasks_site.conftest import ROOT, LazyTasks, Site
from tests.helpers import wait_until

pytestmark = pytest.mark.usefixtures("clean")
tasks: Any = LazyTasks()

TARGET = "saga.contrib.django_tasks.worker"


def run(
    site: Site, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python <args>` with the site's environment; return the finished process."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env or site.env(),
                          capture_output=True, text=True, timeout=60, check=False)


def worker(site: Site, *targets: str) -> subprocess.CompletedProcess[str]:
    proc = run(site, "-m", "saga.worker", *(targets or [f"{TARGET}:sagas"]), "--drain",
               "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    return proc


def manage(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return run(site, "-m", "django", "saga_worker", "--settings",
               "tests.apps.tasks_site.settings", *args)


def post(body: dict[str, Any]) -> Any:
    from django.test import Client

    return Client().post("/notes/", json.dumps(body), content_type="application/json")


def notes(site: Site) -> list[str]:
    return [text for (text,) in site.db.rows("SELECT text FROM {s}.tasks_site_note ORDER BY id")]


def test_a_view_enqueues_in_its_transaction_and_a_worker_runs_it(site: Site) -> None:
    created = post({"text": "kept"})
    assert created.status_code == 201, created.content
    refused = post({"text": "refused", "refuse": True})
    assert refused.status_code == 409
    refused_id = refused.json()["refused"]
    assert notes(site) == ["kept"]  # the refused note and its task rolled back together
    assert site.db.one("SELECT count(*) FROM {s}.instance") == 1
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(refused_id)

    proc = worker(site)
    assert "drained: 1 steps run, 1 completed" in proc.stdout
    result = tasks.add.get_result(created.json()["task"])
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == created.json()["note"] + 1
    assert result.worker_ids[0] != ""


def test_manage_py_saga_worker_serves_the_queues_it_is_given(site: Site) -> None:
    email = tasks.send_email.enqueue("bob@example.com")
    other = tasks.add.enqueue(2, 2)
    proc = manage(site, "--queue", "emails", "--drain", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    email.refresh()
    other.refresh()
    assert email.return_value == "sent to bob@example.com"
    assert other.status == TaskResultStatus.READY
    proc = manage(site, "--drain")
    assert proc.returncode == 0, proc.stderr
    other.refresh()
    assert other.return_value == 4


def test_worker_target_for_named_queues(site: Site) -> None:
    any_queue = tasks.add.using(backend="own_pool", queue_name="bulk").enqueue(1, 1)
    default = tasks.add.enqueue(3, 3)
    worker(site, f"{TARGET}:queues.bulk")
    any_queue.refresh()
    default.refresh()
    assert any_queue.return_value == 2
    assert default.status == TaskResultStatus.READY


def test_worker_errors_are_clear(site: Site) -> None:
    env = site.env()
    del env["DJANGO_SETTINGS_MODULE"]
    proc = run(site, "-m", "saga.worker", f"{TARGET}:sagas", "--drain", env=env)
    assert proc.returncode == 2
    assert "set DJANGO_SETTINGS_MODULE" in proc.stderr
    proc = manage(site, "--queue", "a.b", "--drain")
    assert proc.returncode != 0
    assert "may not be empty or contain" in proc.stderr
    proc = manage(site, "--drain", "--workers", "0")
    assert proc.returncode != 0
    assert "--workers must be at least 1" in proc.stderr


def test_orm_connections_are_closed_between_tasks(site: Site) -> None:
    first = tasks.write_note.enqueue("first")
    careless = tasks.leave_transaction_open.enqueue("never committed")
    second = tasks.write_note.enqueue("second")
    saga = task_backends["default"].worker_saga()
    try:
        saga.run(workers=1, drain=True)  # one thread: the three tasks in turn
    finally:
        saga.close()
    for result in (first, careless, second):
        result.refresh()
    assert first.status == second.status == careless.status == TaskResultStatus.SUCCESSFUL
    # CONN_MAX_AGE = 0: each task had a connection of its own, closed after it, as after
    # a request; the one left in a transaction was closed too (its write rolled back).
    assert first.return_value["pid"] != second.return_value["pid"]
    assert sorted(notes(site)) == ["first", "second"]
    pids = [first.return_value["pid"], second.return_value["pid"]]
    wait_until(lambda: site.db.one(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", pids) == 0)


def test_the_admin_cli_shows_a_task(site: Site) -> None:
    result = tasks.add.enqueue(5, 6)
    worker(site)
    proc = run(site, "-m", "saga", "show", result.id, "--dsn", site.dsn,
               "--schema", site.schema, "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["saga"] == "django_tasks.default"
    assert shown["step"] == "default"
    assert shown["status"] == "complete"
    assert shown["input"]["task"] == "tests.apps.tasks_site.tasks.add"
    assert shown["state"]["return_value"] == 11



def test_the_dashboard_shows_a_task(site: Site) -> None:
    """A task's instance page: the call, its queue, the return value and the attempt
    log read out of the stored input and state, and the step timeline of its attempts."""
    from saga import steplog
    from saga.web import Access, Dashboard
    from tests.web_support import Client

    steplog.enable(site.db.conn, site.schema)
    try:
        ok = tasks.echo.enqueue(5, "<b>six</b>", key={"k": [1]})
        flaky = tasks.flaky.enqueue(1)  # fails once, then succeeds
        # a drain ends before the retry is due: drain again until it has run
        wait_until(lambda: (worker(site), flaky.refresh(),
                            flaky.status == TaskResultStatus.SUCCESSFUL)[-1], timeout=30)
        app = Dashboard(site.dsn, schema=site.schema, access=lambda environ: Access.FULL)
        try:
            client = Client(app)
            pages = {}
            for result in (ok, flaky):
                row = site.db.one("SELECT id FROM {s}.instance WHERE instance_id = %s",
                                  result.id)
                pages[result.id] = client.get(f"/instances/{row}").text
            listed = client.get("/instances?saga=django_tasks.default").text
        finally:
            app.close()
    finally:
        steplog.disable(site.db.conn, site.schema)
    page = pages[ok.id]
    assert "<h2>Task</h2>" in page
    assert ("<code>tests.apps.tasks_site.tasks.echo(5, &quot;&lt;b&gt;six&lt;/b&gt;&quot;, "
            "key={&quot;k&quot;: [1]})</code>") in page
    assert "<dt>queue</dt><dd>default</dd>" in page
    value = page.split("<dt>return value</dt>", 1)[1].split("</dd>", 1)[0]
    assert "&quot;args&quot;" in value
    assert "&lt;b&gt;six&lt;/b&gt;" in value
    assert "<b>six</b>" not in page
    assert '<span class="status s2">complete</span>' in page
    page = pages[flaky.id]
    assert "attempt error 1: builtins.RuntimeError" in page
    assert "attempt 1 fails" in page
    timeline = page.split('<table class="timeline">', 1)[1].split("</table>", 1)[0]
    assert timeline.count("<td>default</td>") == 2  # the failed attempt and the next
    assert "retry later" in timeline
    assert ok.id in listed
    assert flaky.id in listed


def test_a_queue_no_backend_has_is_one_usage_error_line(site: Site) -> None:
    # the example project: its one backend has QUEUES (this site's own_pool takes any name)
    env = {**site.env(), "DJANGO_SETTINGS_MODULE": "examples.django_app.settings",
           "SAGA_DSN": site.dsn}
    proc = run(site, "-m", "saga.worker", f"{TARGET}:queues.nowhere,nor_here", "--drain",
               env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"pgsaga: error: '{TARGET}:queues.nowhere,nor_here': no pgsaga tasks backend has "
        "the queue(s) nowhere, nor_here"]
