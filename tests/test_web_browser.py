"""The dashboard in a real Chromium (Debian's, driven by Playwright), against the
standalone server and against the Flask mount: overview, filter, instance, timeline,
retry, and no console error on the way. Screenshots go to the test's temporary folder,
and to $SAGA_WEB_SCREENSHOTS as well when it is set (that is how docs/ gets them)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from saga import Saga, Status, steplog
from tests.helpers import Db, wait_until
from tests.web_support import shop

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[browser]'")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SAGA_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


def seed(make_saga: Any, db: Db) -> Saga:
    """A shop with history: finished, failed, waiting; the step log on; a chart to draw."""
    store = shop(make_saga("shop"))
    store.schedule("audit", "reserve", every=timedelta(minutes=5),
                   input={"amount": 0, "note": "audit"})
    store.schedule("nightly-report", "reserve", cron="0 2 * * *", tz="Europe/Berlin",
                   input={"amount": 0, "note": "report"})
    steplog.enable(db.conn, db.schema)
    for i in range(12):
        store.start(f"order-{i:03}", "reserve", {"amount": 10 + i, "note": f"order {i}"})
    store.start("order-declined", "reserve", {"amount": 99, "decline": True,
                                              "note": "insufficient funds"})
    store.run(workers=2, drain=True)  # records the schedules
    db.execute("UPDATE {s}.schedule SET next_tick = next_tick - interval '5 minutes' "
               "WHERE name = 'audit'")
    store.run(workers=1, drain=True)  # makes and runs audit's tick
    mail = make_saga("mail")

    @mail.step
    def send(input: Any) -> None:
        pass

    for i in range(4):
        mail.start(f"welcome-{i}", "send", {"to": f"user{i}@example.com"})
    # A chart with an hour in it: earlier step ends, spread over the last hour.
    db.execute("INSERT INTO {s}.step_log (instance, step, attempt, started_at, ended_at, "
               "status, next_step) SELECT i.id, 'reserve', 1, t, t, 2, 'ship' "
               "FROM {s}.instance AS i, LATERAL (SELECT now() - make_interval(secs => "
               "(60 * 60 * random())::float8) AS t FROM generate_series(1, 20)) AS x "
               "WHERE i.name = 'shop' AND i.status = 2")
    return store


def standalone(dsn: str, schema: str) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k != "SAGA_DSN"}
    server = subprocess.Popen(
        [sys.executable, "-m", "saga", "web", "--dsn", dsn, "--schema", schema, "--bind",
         "127.0.0.1:0"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        found = re.search(r"on (http://\S+)", server.stdout.readline())
        assert found
        yield found[1]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
        if server.stdout:
            server.stdout.close()


def flask_mounted(dsn: str, schema: str) -> Iterator[str]:
    import flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.serving import make_server

    from saga.web import Access, Dashboard

    app = flask.Flask("shop")
    app.add_url_rule("/", "home", lambda: "the shop")
    dashboard = Dashboard(dsn, schema=schema, access=lambda environ: Access.FULL)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/ops/saga": dashboard})  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="flask-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/ops/saga/"
    finally:
        server.shutdown()
        thread.join(10)
        dashboard.close()


@pytest.mark.parametrize("how", ["standalone", "flask"])
def test_a_night_on_call(browser: Any, make_saga: Any, dsn: str, schema: str, db: Db,
                         tmp_path: Path, how: str) -> None:
    store = seed(make_saga, db)
    shots = [tmp_path]
    if os.environ.get("SAGA_WEB_SCREENSHOTS") and how == "standalone":
        shots.append(Path(os.environ["SAGA_WEB_SCREENSHOTS"]))

    def shoot(page: Any, name: str) -> None:
        for folder in shots:
            page.screenshot(path=str(folder / f"dashboard-{name}.png"), full_page=True)

    server = (standalone if how == "standalone" else flask_mounted)(dsn, schema)
    base = next(server)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())
    try:
        page.goto(base)
        assert page.locator("h1").inner_text() == "Overview"
        assert page.locator("svg.chart rect.bar").count() == 60
        assert page.locator("#refresh-toggle").is_visible()  # the script ran
        shoot(page, "overview")

        page.get_by_role("link", name="Instances", exact=True).click()
        page.locator("select[name=status]").select_option("error")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r"status=error"))
        links = page.locator("table.instances tbody tr")
        assert links.count() == 1
        shoot(page, "instances")

        page.get_by_role("link", name="order-declined").click()
        assert page.locator("h1").inner_text() == "Instance order-declined"
        timeline = page.locator("table.timeline tbody tr")
        assert [timeline.nth(i).locator("td").nth(1).inner_text()
                for i in range(timeline.count())] == ["reserve", "charge"]
        assert page.locator("svg.timeline rect").count() == 2
        assert "insufficient funds" in page.locator("pre.error").inner_text()
        shoot(page, "instance")

        db.execute("UPDATE {s}.instance SET input = input - 'decline' "
                   "WHERE instance_id = 'order-declined'")
        page.get_by_role("button", name="Retry").click()
        assert "Retried" in page.locator("p.flash").inner_text()
        store.run(workers=1, drain=True)
        wait_until(lambda: db.row("order-declined")["status"] == Status.COMPLETE)
        page.reload()
        assert page.locator("dl.facts .status").inner_text() == "complete"
        assert page.locator("table.timeline tbody tr").count() == 4
        shoot(page, "retried")

        visit_runners_and_schedules(page, db, shoot)
    finally:
        context.close()
        next(server, None)
    assert problems == []


def visit_runners_and_schedules(page: Any, db: Db, shoot: Callable[[Any, str], None]) -> None:
    """Runners; then Schedules: both rows, pause and resume one, follow a tick's link."""
    page.get_by_role("link", name="Runners").click()
    assert page.locator("h1").inner_text() == "Runners"
    page.get_by_role("link", name="Schedules").click()
    assert page.locator("h1").inner_text() == "Schedules"
    rows = page.locator("table.schedules tbody tr")
    assert rows.count() == 2
    audit = rows.filter(has_text="audit")
    assert "complete" in audit.locator(".status").inner_text()
    nightly = rows.filter(has_text="nightly-report")
    assert "0 2 * * * Europe/Berlin" in nightly.inner_text()
    shoot(page, "schedules")
    nightly.get_by_role("button", name="Pause").click()
    assert "Paused" in page.locator("p.flash").inner_text()
    assert db.one("SELECT paused FROM {s}.schedule WHERE name = 'nightly-report'")
    page.locator("table.schedules tbody tr").filter(has_text="nightly-report") \
        .get_by_role("button", name="Resume").click()
    assert "Resumed" in page.locator("p.flash").inner_text()
    audit = page.locator("table.schedules tbody tr").filter(has_text="audit")
    audit.get_by_role("link", name=re.compile(r"^audit@")).click()
    assert page.locator("h1").inner_text().startswith("Instance audit@")
