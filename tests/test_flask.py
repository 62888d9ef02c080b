"""The Flask example (examples/flask_app) through Flask's test client, on the test Postgres,
with a worker running its saga."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from examples.flask_app.app import create_app
from saga import Saga, Status
from tests.helpers import Db, running, wait_until


@pytest.fixture
def app(dsn: str, schema: str) -> Iterator[Flask]:
    """The example app on the test's schema, its saga tables made by its `init-db`."""
    app = create_app({"SAGA_DSN": dsn, "SAGA_SCHEMA": schema, "TESTING": True})
    try:
        result = app.test_cli_runner().invoke(args=["init-db"])
        assert result.exit_code == 0, result.output
        assert "applied" in result.output
        yield app
    finally:
        app.extensions["saga"].close()


@pytest.fixture
def saga(app: Flask) -> Saga:
    s: Saga = app.extensions["saga"]
    return s


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def show(client: FlaskClient, id: str) -> dict[str, Any]:
    response = client.get(f"/payments/{id}")
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def test_the_app_opens_its_sagas_pool_at_startup(saga: Saga, dsn: str, schema: str) -> None:
    assert saga.has_pool
    assert (saga.dsn, saga.schema) == (dsn, schema)


def test_a_payment_runs_to_completion_with_a_live_worker(
        client: FlaskClient, saga: Saga, db: Db) -> None:
    with running(saga, db):
        started = client.post("/payments", json={"id": "p-1", "amount": 250})
        assert started.status_code == 202, started.json
        assert started.json == {"id": "p-1"}
        wait_until(lambda: show(client, "p-1")["step"] == "gateway_reply")
        assert show(client, "p-1")["status"] == "PENDING"  # waiting for the gateway

        confirmed = client.post("/gateway/p-1", json={"status": "CONFIRMED"})
        assert confirmed.status_code == 204, confirmed.json
        wait_until(lambda: show(client, "p-1")["status"] == "COMPLETE")
    assert show(client, "p-1") == {
        "id": "p-1", "status": "COMPLETE", "step": "gateway_reply", "error": None,
        "result": {"outcome": "paid", "gateway": "CONFIRMED", "amount": 250}}
    again = client.post("/gateway/p-1", json={"status": "DECLINED"})
    assert again.status_code == 409
    assert "not waiting" in again.json["error"]  # type: ignore[index]


def test_start_answers_409_for_a_duplicate_and_400_for_bad_input(
        client: FlaskClient, db: Db) -> None:
    assert client.post("/payments", json={"id": "p-1", "amount": 250}).status_code == 202
    duplicate = client.post("/payments", json={"id": "p-1", "amount": 99})
    assert duplicate.status_code == 409, duplicate.json
    for body in ({"id": "p-2", "amount": "ten"}, {"id": "p-2"}, {"id": "", "amount": 1},
                 {"amount": 1}, ["p-2"]):
        response = client.post("/payments", json=body)
        assert response.status_code == 400, (body, response.json)
    assert client.post("/payments", data="p-2").status_code == 400  # not JSON
    assert db.rows("SELECT instance_id, input FROM {s}.instance") == [
        ("p-1", {"amount": 250, "currency": "EUR"})]


def test_the_webhook_answers_404_409_and_400(client: FlaskClient, saga: Saga) -> None:
    assert client.post("/gateway/nope", json={"status": "CONFIRMED"}).status_code == 404
    assert client.get("/payments/nope").status_code == 404
    assert client.post("/payments", json={"id": "p-1", "amount": 250}).status_code == 202
    early = client.post("/gateway/p-1", json={"status": "CONFIRMED"})
    assert early.status_code == 409  # the charge has not been asked for yet
    assert show(client, "p-1")["step"] == "charge"
    assert client.post("/gateway/p-1", json={"status": "MAYBE"}).status_code == 400
    assert client.post("/gateway/p-1", json={}).status_code == 400

    saga.run(workers=2, drain=True)
    assert client.post("/gateway/p-1", json={"status": "DECLINED"}).status_code == 204
    saga.run(workers=2, drain=True)
    assert show(client, "p-1")["result"] == {
        "outcome": "failed", "gateway": "DECLINED", "amount": 250}


def test_a_step_that_fails_for_good_shows_its_error(client: FlaskClient, saga: Saga) -> None:
    assert client.post("/payments", json={"id": "p-0", "amount": 0}).status_code == 202
    saga.run(workers=1, drain=True)
    shown = show(client, "p-0")
    assert (shown["status"], shown["error"]) == (Status.ERROR.name, "cannot charge 0")


def test_the_app_and_its_worker_module_read_the_same_schema(
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug: the docstring said SAGA_SCHEMA came from the environment; it was "saga"."""
    monkeypatch.setenv("SAGA_DSN", dsn)
    monkeypatch.setenv("SAGA_SCHEMA", schema)
    app = create_app({"TESTING": True})
    try:
        app_saga: Saga = app.extensions["saga"]
        assert app_saga.schema == schema
        app_saga.init_db()
        app.test_client().post("/payments", json={"id": "p-9", "amount": 5})
    finally:
        app.extensions["saga"].close()
    # The worker's module, on the same schema through SAGA_SCHEMA or --schema (--drain
    # runs the charge; the gateway's reply then waits, delayed).
    env = {k: v for k, v in os.environ.items() if k != "SAGA_SCHEMA"}
    for options, environ in (([], {**env, "SAGA_SCHEMA": schema}), (["--schema", schema], env)):
        done = subprocess.run(
            [sys.executable, "-m", "saga.worker", "examples.flask_app.sagas:saga", "--drain",
             *options], env=environ, cwd=Path(__file__).parents[1], capture_output=True,
            text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert f"schema {schema}" in done.stderr  # the startup line
    db = Db(dsn, schema)
    assert db.row("p-9")["step"] == "gateway_reply"
    db.close()
