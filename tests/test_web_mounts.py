"""The dashboard's three ways to run: mounted in Django (a subprocess, since Django is
set up once per process), mounted in Flask (both ways), and `python -m saga web`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import flask
import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from saga import Saga, Status
from saga.admin.cli import main
from saga.web import Access, Dashboard
from saga.web.flask import mount
from tests.helpers import Db
from tests.web_support import shop

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(make_saga: Any) -> Saga:
    saga = shop(make_saga("shop"))
    saga.start("bad", "reserve", {"decline": True})
    saga.start("good", "reserve", {})
    saga.run(workers=1, drain=True)
    return saga


def test_django_mount_staff_only(dsn: str, schema: str, store: Saga) -> None:
    # urls() names no schema there: it is SAGA_SCHEMA's, as for a Saga
    done = subprocess.run([sys.executable, "-m", "tests.apps.django_web", dsn, schema],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "SAGA_SCHEMA": schema})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_flask_dispatcher_middleware(dsn: str, schema: str, store: Saga, db: Db) -> None:
    app = flask.Flask("shop")
    app.add_url_rule("/", "home", lambda: "home")
    dashboard = Dashboard(dsn, schema=schema, access=lambda environ: Access.FULL)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/saga": dashboard})  # type: ignore[method-assign]
    try:
        client = app.test_client()
        assert client.get("/").text == "home"
        page = client.get("/saga/instances")
        assert page.status_code == 200
        assert 'href="/saga/instances/' in page.text
        assert 'src="/saga/static/app.js"' in page.text
        row_id = db.one("SELECT id FROM {s}.instance WHERE instance_id = 'bad'")
        detail = client.get(f"/saga/instances/{row_id}").text
        token = re.search(r'name="csrf" value="([^"]+)"', detail)
        assert token
        reply = client.post(f"/saga/instances/{row_id}/retry", data={"csrf": token[1]})
        assert reply.status_code == 303
        assert reply.headers["Location"] == f"/saga/instances/{row_id}?done=retry"
        assert db.row("bad")["status"] == Status.PENDING
    finally:
        dashboard.close()


def test_dashboard_schema_defaults_as_a_saga_does(dsn: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGA_SCHEMA", "elsewhere")
    assert Dashboard(dsn).schema == "elsewhere"
    assert Dashboard(dsn, schema="mine").schema == "mine"
    monkeypatch.setenv("SAGA_SCHEMA", "no such")
    with pytest.raises(ValueError, match="SAGA_SCHEMA: "):
        Dashboard(dsn)
    monkeypatch.delenv("SAGA_SCHEMA")
    assert Dashboard(dsn).schema == "saga"


def test_flask_mount_decides_in_the_request_context(dsn: str, schema: str, store: Saga,
                                                    db: Db, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    app = flask.Flask("shop")
    app.secret_key = "test"

    @app.route("/login/<name>")
    def login(name: str) -> str:
        flask.session["user"] = name
        return "in"

    def access() -> Access:
        user = flask.session.get("user")
        return {"admin": Access.FULL, "viewer": Access.READ_ONLY}.get(user, Access.FORBIDDEN)

    monkeypatch.setenv("SAGA_SCHEMA", schema)  # no schema=: SAGA_SCHEMA's, as for a Saga
    dashboard = mount(app, "/ops", dsn, access=access,
                      user=lambda: flask.session.get("user"))
    try:
        client = app.test_client()
        assert client.get("/ops/").status_code == 403
        client.get("/login/viewer")
        page = client.get("/ops/")
        assert page.status_code == 200
        assert "read-only · viewer" in page.text
        assert 'href="/ops/instances"' in page.text
        client.get("/login/admin")
        row_id = db.one("SELECT id FROM {s}.instance WHERE instance_id = 'bad'")
        token = re.search(r'name="csrf" value="([^"]+)"',
                          client.get(f"/ops/instances/{row_id}").text)
        assert token
        assert client.post(f"/ops/instances/{row_id}/retry",
                           data={"csrf": token[1]}).status_code == 303
        assert db.row("bad")["status"] == Status.PENDING
        with pytest.raises(ValueError, match="prefix must start with /"):
            mount(app, "ops/", dsn, access=access)
    finally:
        dashboard.close()


def test_standalone_server(dsn: str, schema: str, store: Saga) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SAGA_DSN"}
    server = subprocess.Popen(
        [sys.executable, "-m", "saga", "web", "--dsn", dsn, "--schema", schema,
         "--bind", "127.0.0.1:0", "--read-only"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        found = re.search(r"^pgsaga web: serving schema \S+ \(read-only\) on "
                          r"(http://127\.0\.0\.1:\d+/)", line)
        assert found, (line, server.stderr.read() if server.stderr else "")
        with urllib.request.urlopen(found[1] + "instances?saga=shop", timeout=10) as reply:
            body = reply.read().decode()
            assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert ">good</a>" in body
        assert "· read-only" in body
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "stopped" in out


def test_standalone_server_needs_the_migration(dsn: str, schema: str) -> None:
    assert main(["web", "--dsn", dsn, "--schema", schema]) == 1


def test_standalone_bind_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--bind", "nowhere"]) == 2
    assert "expected HOST:PORT" in capsys.readouterr().err


def test_steplog_command(dsn: str, schema: str, store: Saga,
                         capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> str:
        assert main(["steplog", *args, "--dsn", dsn, "--schema", schema]) == 0
        return capsys.readouterr().out.strip()

    assert run("status") == f"step log of schema {schema}: off"
    assert run("on") == f"step log of schema {schema}: on"
    assert run("status").endswith(": on")
    assert run("off").endswith(": off")
    assert main(["steplog", "maybe", "--dsn", dsn]) == 2
