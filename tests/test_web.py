"""The dashboard as a WSGI app, through the standard library's interface: every page,
filter, action, access level, CSRF rejection and escaping case, on a real server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from saga import Saga, Status, steplog
from saga.web import Access, Dashboard
from tests.helpers import Db
from tests.web_support import HOSTILE, Client, shop


@pytest.fixture
def store(make_saga: Any) -> Saga:
    return shop(make_saga("shop"))


def dashboard(dsn: str, schema: str, access: Access = Access.FULL, **options: Any) -> Dashboard:
    return Dashboard(dsn, schema=schema, access=lambda environ: access, **options)


@pytest.fixture
def client(dsn: str, schema: str, store: Saga) -> Iterator[Client]:
    app = dashboard(dsn, schema)
    yield Client(app)
    app.close()


def row_id(db: Db, instance: str) -> int:
    return int(db.one("SELECT id FROM {s}.instance WHERE instance_id = %s", instance))


def listed(reply_text: str) -> list[str]:
    """The instance ids of a list page, in order."""
    return re.findall(r'</a></td><td>[^<]*</td><td><a href="[^"]*/instances/\d+">([^<]*)</a>',
                      reply_text)


# -- pages ------------------------------------------------------------------------------


def test_every_page_answers_with_strict_headers(client: Client, store: Saga, db: Db) -> None:
    store.start("o-1", "reserve", {})
    for path in ("/", "/instances", f"/instances/{row_id(db, 'o-1')}", "/runners",
                 "/bulk/retry", "/static/app.css", "/static/app.js"):
        reply = client.get(path)
        assert reply.status == 200, (path, reply.text)
        csp = reply.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["x-frame-options"] == "DENY"
    assert "<script>" not in client.get("/").text  # only <script src=...>


def test_overview_counts_backlog_runners_and_orphans(client: Client, store: Saga,
                                                     db: Db) -> None:
    for i in range(3):
        store.start(f"o-{i}", "reserve", {})
    store.start("bad", "reserve", {"decline": True})
    store.run(workers=1, drain=True)
    store.start("waiting", "reserve", {})
    db.execute("UPDATE {s}.instance SET run_after = now() - interval '90 seconds' "
               "WHERE instance_id = 'waiting'")
    page = client.get("/").text
    row = re.search(r"<tr><td><a [^>]*>shop</a></td>(.*?)</tr>", page)
    assert row is not None
    numbers = re.findall(r"<td>(?:<a [^>]*>)?(?:<span[^>]*>)?([^<]*)<", row[1])
    # pending, running, complete, error, cancelled, due, lag
    assert numbers[:6] == ["1", "0", "3", "1", "0", "1"]
    assert numbers[6].startswith("1m")
    assert "Orphaned due steps" in page
    assert ">reserve</a>" in page
    assert "No live runner." in page
    assert "History not recorded" not in page
    assert "Step history is not recorded" in page
    assert "≈" not in page  # a small table is counted exactly
    assert '<svg class="chart"' in page
    assert "instances finished in the last hour" in page


def test_overview_chart_counts_steps_when_the_log_is_on(client: Client, store: Saga,
                                                        db: Db) -> None:
    steplog.enable(db.conn, db.schema)
    store.start("o-1", "reserve", {})
    store.run(workers=1, drain=True)
    page = client.get("/").text
    assert "3 steps finished in the last hour" in page
    assert "not recorded" not in page


def test_overview_estimates_on_a_big_table(client: Client, store: Saga, db: Db,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from saga.web import queries

    monkeypatch.setattr(queries, "SMALL_TABLE", 0)
    monkeypatch.setattr(queries, "EXACT_BELOW", 1)
    db.execute("INSERT INTO {s}.instance (name, instance_id, step, status) "
               "SELECT 'shop', 'i-' || n, 'ship', 2 FROM generate_series(1, 500) AS n")
    db.execute("ANALYZE {s}.instance")
    page = client.get("/").text
    assert "≈500" in page
    assert "an estimate from the planner" in page


def test_runners_page(client: Client, store: Saga, db: Db) -> None:
    db.execute("INSERT INTO {s}.runner (id, hostname, pid, serves, expires_at) VALUES "
               "('web-1:42:ab', 'web-1', 42, '{{\"shop\": [\"reserve\", \"<b>x\"]}}', "
               "now() + interval '1 minute'), ('old:1:cd', 'old', 1, '{{}}', now() - "
               "interval '1 minute')")
    page = client.get("/runners").text
    assert "web-1:42:ab" in page
    assert "shop: reserve, &lt;b&gt;x" in page
    assert "expired" in page
    overview = client.get("/").text
    assert "web-1:42:ab" in overview
    assert "old:1:cd" not in overview


def test_list_filters_and_pages_by_keyset(client: Client, store: Saga, db: Db) -> None:
    for i in range(7):
        store.start(f"a-{i}", "reserve", {})
        db.execute("UPDATE {s}.instance SET updated_at = now() - make_interval(mins => %s) "
                   "WHERE instance_id = %s", 10 - i, f"a-{i}")
    store.start("b-1", "charge", {})
    db.execute("UPDATE {s}.instance SET status = 3, updated_at = now() - interval '1 day' "
               "WHERE instance_id = 'b-1'")
    assert listed(client.get("/instances").text)[:3] == ["a-6", "a-5", "a-4"]
    assert listed(client.get("/instances?status=error").text) == ["b-1"]
    assert listed(client.get("/instances?step=charge").text) == ["b-1"]
    assert listed(client.get("/instances?prefix=b-").text) == ["b-1"]
    assert listed(client.get("/instances?prefix=%25").text) == []  # no wildcard
    assert listed(client.get("/instances?saga=other").text) == []
    since = db.one("SELECT to_char((now() - interval '330 seconds') AT TIME ZONE 'UTC', "
                   "'YYYY-MM-DD\"T\"HH24:MI:SS')")
    assert listed(client.get(f"/instances?since={since}").text) == ["a-6", "a-5"]
    assert listed(client.get(f"/instances?until={since}&status=pending").text)[0] == "a-4"

    seen: list[str] = []
    page = client.get("/instances?limit=3").text
    while True:
        seen += listed(page)
        nxt = re.search(r'<a rel="next" href="([^"]+)"', page)
        if not nxt:
            break
        page = client.get(nxt[1].replace("&amp;", "&")).text
    assert seen == [f"a-{i}" for i in range(6, -1, -1)] + ["b-1"]


@pytest.mark.parametrize(("query", "message"), [
    ("limit=0", "parameter 'limit' must be a whole number from 1 to 500"),
    ("limit=100000", "from 1 to 500"),
    ("limit=abc", "parameter 'limit'"),
    ("status=done", "parameter 'status' must be one of pending, running"),
    ("since=yesterday", "parameter 'since' must be a time"),
    ("since=2025-01-02&until=2025-01-01", "'since' must be before 'until'"),
    ("before_id=3", "'before_at' and 'before_id' go together"),
    ("saga=a&saga=b", "parameter 'saga' is given 2 times"),
    ("step=" + "x" * 1001, "parameter 'step' must be at most 1000 characters"),
    ("saga=%00", "without NUL"),
])
def test_bad_parameters_are_400_naming_them(client: Client, query: str, message: str) -> None:
    reply = client.get("/instances", query=query)
    assert reply.status == 400
    assert message.replace("'", "&#x27;") in reply.text


def test_unknown_pages_and_methods(client: Client) -> None:
    assert client.get("/nope").status == 404
    assert client.get("/instances/999999").status == 404
    assert client.get("/static/secret.py").status == 404
    assert client.get("/static/../app.py").status == 404
    assert client.post("/instances", {}).status == 405
    assert client.get("/instances/1/retry").status == 405
    assert client.get("/instances", query="full=x").status == 200


def test_instance_page_shows_json_error_and_truncates(client: Client, store: Saga,
                                                     db: Db) -> None:
    store.start("big", "reserve", {"blob": "x" * 10_000, "decline": True, "note": "n"})
    store.run(workers=1, drain=True)
    path = f"/instances/{row_id(db, 'big')}"
    page = client.get(path).text
    assert '<span class="status s3">error</span>' in page
    assert "card declined: n" in page
    assert "show all (" in page
    assert "x" * 10_000 not in page
    assert "x" * 10_000 in client.get(path + "?full=input").text
    assert "History not recorded" in page
    assert client.get(path + "?full=oops").status == 400


def test_instance_timeline_from_a_worker_run(client: Client, store: Saga, db: Db) -> None:
    steplog.enable(db.conn, db.schema)
    store.start("t", "reserve", {})
    store.run(workers=1, drain=True)
    page = client.get(f"/instances/{row_id(db, 't')}").text
    steps = re.findall(r'<table class="timeline">.*</table>', page, re.S)[0]
    assert [m for m in re.findall(r"<tr><td>\d+</td><td>(\w+)</td>", steps)] == [
        "reserve", "charge", "ship"]
    assert "ran on to charge" in steps
    assert '<span class="status s2">complete</span>' in steps
    assert '<svg class="timeline"' in page


# -- escaping ---------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_data_is_escaped_everywhere(client: Client, make_saga: Any, db: Db,
                                            hostile: str) -> None:
    evil = shop(make_saga(hostile))
    evil.start(hostile, "reserve", {hostile: hostile, "decline": True, "note": hostile})
    evil.run(workers=1, drain=True)
    db.execute("UPDATE {s}.instance SET step = %s, state = to_jsonb(%s::text)", hostile,
               hostile)
    steplog.enable(db.conn, db.schema)
    pages = [client.get(p).text for p in (
        "/", "/instances", f"/instances/{row_id(db, hostile)}", "/runners",
        f"/instances?prefix={hostile}", f"/bulk/cancel?saga={hostile}")]
    for page in pages:
        assert hostile not in page
        assert "<img" not in page
        assert "<svg onload" not in page
        assert "<script>" not in page
    assert any("&lt;" in page for page in pages)


# -- access -----------------------------------------------------------------------------


def test_forbidden_sees_nothing(dsn: str, schema: str, store: Saga) -> None:
    app = dashboard(dsn, schema, Access.FORBIDDEN)
    try:
        client = Client(app)
        for path in ("/", "/instances", "/runners", "/static/app.css"):
            assert client.get(path).status == 403
    finally:
        app.close()


def test_read_only_sees_but_cannot_act(dsn: str, schema: str, store: Saga, db: Db) -> None:
    store.start("bad", "reserve", {"decline": True})
    store.run(workers=1, drain=True)
    app = dashboard(dsn, schema, Access.READ_ONLY)
    try:
        client = Client(app)
        page = client.get(f"/instances/{row_id(db, 'bad')}")
        assert page.status == 200
        assert "Retry</button>" not in page.text
        assert "retry the ERROR ones" not in client.get("/instances").text
        assert client.get("/bulk/retry").status == 403
        reply = client.post(f"/instances/{row_id(db, 'bad')}/retry",
                            {"csrf": client.cookies["saga_csrf"]})
        assert reply.status == 403
        assert "read-only" in reply.text
    finally:
        app.close()
    assert db.row("bad")["status"] == Status.ERROR


def test_default_access_is_read_only(dsn: str, schema: str, store: Saga) -> None:
    app = Dashboard(dsn, schema=schema)
    try:
        assert "· read-only" in Client(app).get("/").text
    finally:
        app.close()


def test_runs_on_a_pool_it_is_given(dsn: str, schema: str, store: Saga) -> None:
    from psycopg_pool import ConnectionPool

    with ConnectionPool(dsn, min_size=1, max_size=2, open=True,
                        kwargs={"autocommit": True}) as pool:
        app = Dashboard(pool=pool, schema=schema)
        assert Client(app).get("/instances").status == 200
        app.close()
        assert not pool.closed  # not the app's to close


def test_bad_arguments_name_themselves(dsn: str) -> None:
    with pytest.raises(ValueError, match="dsn or a pool"):
        Dashboard()
    with pytest.raises(ValueError, match="schema must be"):
        Dashboard(dsn, schema="Bad-Schema")
    with pytest.raises(TypeError, match="access must be a callable"):
        Dashboard(dsn, access=Access.FULL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refresh must be"):
        Dashboard(dsn, refresh=-1)


# -- actions and CSRF -------------------------------------------------------------------


def test_retry_then_a_worker_completes_it(client: Client, store: Saga, db: Db,
                                          caplog: pytest.LogCaptureFixture) -> None:
    store.start("bad", "reserve", {"decline": True})
    store.run(workers=1, drain=True)
    path = f"/instances/{row_id(db, 'bad')}"
    token = client.get(path).csrf()
    db.execute("UPDATE {s}.instance SET input = '{{}}'")  # the card works now
    with caplog.at_level("INFO", logger="saga.web"):
        reply = client.post(path + "/retry", {"csrf": token},
                            environ={"REMOTE_USER": "alice"})
    assert reply.status == 303
    assert reply.headers["location"] == path + "?done=retry"
    assert db.row("bad")["status"] == Status.PENDING
    assert "Retried" in client.get(reply.headers["location"]).text
    record = next(r for r in caplog.records if getattr(r, "action", "") == "web_retry")
    assert record.user == "alice"  # type: ignore[attr-defined]
    store.run(workers=1, drain=True)
    assert db.row("bad")["status"] == Status.COMPLETE
    assert client.post(path + "/retry", {"csrf": token}).status == 409  # not ERROR now


def test_cancel_pending(client: Client, store: Saga, db: Db) -> None:
    store.start("c", "reserve", {})
    path = f"/instances/{row_id(db, 'c')}"
    page = client.get(path)
    assert 'data-confirm="Cancel this instance?"' in page.text
    assert client.post(path + "/cancel", {"csrf": page.csrf()}).status == 303
    assert db.row("c")["status"] == Status.CANCELLED


@pytest.mark.parametrize("case", ["no token", "wrong token", "no cookie", "other origin"])
def test_csrf_rejections(client: Client, store: Saga, db: Db, case: str) -> None:
    store.start("c", "reserve", {})
    path = f"/instances/{row_id(db, 'c')}"
    token = client.get(path).csrf()
    form, headers = {"csrf": token}, {}
    if case == "no token":
        form = {}
    elif case == "wrong token":
        form = {"csrf": "A" * 43}
    elif case == "no cookie":
        client.cookies.clear()
    else:
        headers = {"Origin": "https://evil.example"}
    reply = client.post(path + "/cancel", form, headers=headers)
    assert reply.status == 403
    assert db.row("c")["status"] == Status.PENDING
    # the same origin, with the token, is fine
    if case != "no cookie":
        assert client.post(path + "/cancel", {"csrf": token},
                           headers={"Origin": "http://localhost"}).status == 303


def test_csrf_cookie_is_strict(client: Client) -> None:
    reply = client.get("/")
    [cookie] = reply.cookies
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert client.get("/").cookies == []  # set once


def test_bulk_retry_and_cancel_confirm_with_a_count(client: Client, store: Saga,
                                                    db: Db) -> None:
    for i in range(5):
        store.start(f"bad-{i}", "reserve", {"decline": True})
    store.start("fine", "reserve", {})
    store.run(workers=2, drain=True)
    for i in range(3):
        store.start(f"p-{i}", "reserve", {})
    confirm = client.get("/bulk/retry?saga=shop")
    assert "5 ERROR instances to retry" in confirm.text
    db.execute("UPDATE {s}.instance SET input = '{{}}' WHERE status = 3")
    reply = client.post("/bulk/retry", {"csrf": confirm.csrf(), "saga": "shop"})
    assert reply.status == 303
    assert "n=5" in reply.headers["location"]
    assert "Retried 5 instance(s)." in client.get(reply.headers["location"]).text
    assert db.statuses() == {Status.PENDING: 8, Status.COMPLETE: 1}

    confirm = client.get("/bulk/cancel?prefix=p-")
    assert "3 PENDING or RUNNING instances to cancel" in confirm.text
    client.post("/bulk/cancel", {"csrf": confirm.csrf(), "prefix": "p-"})
    assert db.statuses() == {Status.PENDING: 5, Status.COMPLETE: 1, Status.CANCELLED: 3}
    assert client.post("/bulk/cancel", {"prefix": "bad-"}).status == 403  # no token


def test_bulk_batches(store: Saga, db: Db) -> None:
    from saga.web.queries import Filters, WebStore

    db.execute("INSERT INTO {s}.instance (name, instance_id, step, status) "
               "SELECT 'shop', 'e-' || n, 'charge', 3 FROM generate_series(1, 25) AS n")
    web = WebStore(db.schema)
    assert web.bulk(db.conn, "retry", Filters(saga="shop"), batch=4, most=10) == 10
    assert web.bulk(db.conn, "retry", Filters(saga="shop"), batch=4) == 15
    assert db.statuses() == {Status.PENDING: 25}


def test_a_task_shaped_input_gets_a_task_section(client: Client, store: Saga, db: Db) -> None:
    store.start("t", "reserve", {"task": "app.tasks.mail", "args": ["<i>x</i>"],
                                 "kwargs": {"n": 2}, "run_after": None})
    store.start("plain", "reserve", {"task": "app.tasks.mail", "args": []})
    page = client.get(f"/instances/{row_id(db, 't')}").text
    assert "<code>app.tasks.mail(&quot;&lt;i&gt;x&lt;/i&gt;&quot;, n=2)</code>" in page
    assert "<dt>queue</dt><dd>reserve</dd>" in page
    assert "<h2>Task</h2>" not in client.get(f"/instances/{row_id(db, 'plain')}").text
