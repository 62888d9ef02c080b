"""The dashboard's Schedules page: what it lists, pause/resume under the access and
CSRF rules of the other actions, escaping of hostile names, and a role that may not
read the schedule table."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from saga import Saga
from saga.schedules import Ticker
from saga.web import Access, Dashboard
from tests.helpers import Db
from tests.web_support import HOSTILE, Client


def billing(make_saga: Callable[..., Saga], name: str = "billing",
            schedule: str = "often") -> Saga:
    s = make_saga(name)

    @s.step
    def reconcile(input: object) -> None:
        return None

    s.schedule(schedule, reconcile, every=timedelta(minutes=5))
    s.schedule("nightly", reconcile, cron="0 2 * * *", tz="Europe/Berlin")
    return s


def serve(saga: Saga) -> None:
    """What a worker does first: record the schedules, make the due ticks."""
    Ticker(saga.pool, saga.schema, {saga.name: list(saga.schedules.values())}).run_once()


def app(dsn: str, schema: str, access: Access = Access.FULL) -> Dashboard:
    return Dashboard(dsn, schema=schema, access=lambda environ: access,
                     user=lambda environ: "alice")


@pytest.fixture
def client(dsn: str, schema: str) -> Iterator[Client]:
    dashboard = app(dsn, schema)
    yield Client(dashboard)
    dashboard.close()


def test_lists_timing_ticks_state_and_links_the_last_instance(
        make_saga: Callable[..., Saga], client: Client, db: Db) -> None:
    saga = billing(make_saga)
    serve(saga)  # records both, with their next ticks
    db.execute("UPDATE {s}.schedule SET next_tick = next_tick - interval '5 minutes' "
               "WHERE name = 'often'")  # due: the next serve makes its tick
    serve(saga)
    db.execute("UPDATE {s}.schedule SET next_tick = now() - interval '2 hours' "
               "WHERE name = 'nightly'")  # and no worker has served this one since
    row = int(db.one("SELECT id FROM {s}.instance WHERE instance_id LIKE %s", "often@%"))
    page = client.get("/schedules")
    assert page.status == 200, page.text
    assert 'href="/schedules" aria-current="page">Schedules</a>' in page.text
    assert "every 300s UTC" in page.text
    assert "0 2 * * * Europe/Berlin" in page.text
    assert f'<a href="/instances/{row}">often@' in page.text
    assert '<span class="status s0">pending</span>' in page.text
    nightly = page.text.split("<td>nightly</td>", 1)[1].split("</tr>", 1)[0]
    assert "<td>2h" in nightly  # overdue by about two hours
    assert "Pause</button>" in nightly
    assert client.get("/schedules?saga=other").text.count("No schedules") == 1


def test_pause_and_resume_are_logged_with_the_user(
        make_saga: Callable[..., Saga], client: Client, db: Db,
        caplog: pytest.LogCaptureFixture) -> None:
    serve(billing(make_saga))
    token = client.get("/schedules").csrf()
    form = {"csrf": token, "saga": "billing", "schedule": "nightly"}
    with caplog.at_level(logging.INFO, "saga.web"):
        reply = client.post("/schedules/pause", form)
    assert (reply.status, reply.headers["location"]) == (303, "/schedules?done=pause")
    assert db.one("SELECT paused FROM {s}.schedule WHERE name = 'nightly'") is True
    assert "alice: pause schedule nightly of saga billing" in caplog.text
    page = client.get("/schedules?done=pause").text
    assert "Paused: the schedule makes no tick" in page
    assert "Resume</button>" in page
    assert client.post("/schedules/resume", form).status == 303
    assert db.one("SELECT paused FROM {s}.schedule WHERE name = 'nightly'") is False
    missing = client.post("/schedules/pause", {**form, "schedule": "nope"})
    assert missing.status == 404
    assert "has no schedule" in missing.text
    assert client.post("/schedules/pause", {"csrf": token}).status == 400


@pytest.mark.parametrize("case", ["read-only", "no token", "other origin"])
def test_pause_needs_full_access_and_a_token(make_saga: Callable[..., Saga], dsn: str,
                                             schema: str, db: Db, case: str) -> None:
    serve(billing(make_saga))
    dashboard = app(dsn, schema, Access.READ_ONLY if case == "read-only" else Access.FULL)
    try:
        client = Client(dashboard)
        page = client.get("/schedules")
        assert page.status == 200
        assert ("Pause</button>" in page.text) is (case != "read-only")
        form = {"csrf": client.cookies["saga_csrf"], "saga": "billing",
                "schedule": "nightly"}
        headers = {"Origin": "https://evil.example"} if case == "other origin" else {}
        if case == "no token":
            del form["csrf"]
        assert client.post("/schedules/pause", form, headers=headers).status == 403
    finally:
        dashboard.close()
    assert db.one("SELECT paused FROM {s}.schedule WHERE name = 'nightly'") is False


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_are_escaped(make_saga: Callable[..., Saga], client: Client, db: Db,
                                   hostile: str) -> None:
    serve(billing(make_saga, hostile, hostile))
    db.execute("UPDATE {s}.schedule SET last_error = %s, step = %s", hostile, hostile)
    page = client.get("/schedules").text
    assert hostile not in page
    assert "<img" not in page
    assert "<svg onload" not in page
    assert "<script>" not in page
    assert "&lt;" in page
    # the escaped name in the form comes back as the name: the action finds the row
    token = client.get("/schedules").csrf()
    assert client.post("/schedules/pause", {"csrf": token, "saga": hostile,
                                            "schedule": hostile}).status == 303
    assert db.one("SELECT paused FROM {s}.schedule WHERE name = %s", hostile) is True


def test_a_role_that_may_not_read_schedules_gets_a_page_that_says_so(
        make_saga: Callable[..., Saga], dsn: str, schema: str) -> None:
    serve(billing(make_saga))
    role, s = sql.Identifier(f"web_{schema}"), sql.Identifier(schema)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        try:
            admin.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, role))
            admin.execute(sql.SQL("GRANT SELECT ON {}.instance TO {}").format(s, role))
            dashboard = app(make_conninfo(dsn, user=f"web_{schema}"), schema)
            try:
                page = Client(dashboard).get("/schedules")
            finally:
                dashboard.close()
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(role))
            admin.execute(sql.SQL("DROP ROLE {}").format(role))
    assert page.status == 200
    assert "may not read" in page.text


def test_an_empty_page_has_the_strict_headers(make_saga: Callable[..., Saga],
                                              client: Client) -> None:
    assert "has no schedule table yet" in client.get("/schedules").text  # not migrated
    make_saga("plain")
    reply = client.get("/schedules")
    assert reply.status == 200
    assert "No schedules" in reply.text
    assert "default-src 'none'" in reply.headers["content-security-policy"]
