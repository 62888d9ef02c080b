"""`saga.store.Store`: the API's queries, claiming, lease-guarded writes, NOTIFY."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import saga.store
from saga.sqlfiles import named_queries
from saga.store import Claimed, Lease, Store
from tests.helpers import Db
from tests.store_support import NAME, RUNNER, STEPS, Conn, add, claim_one, conn, store

__all__ = ["conn", "store"]  # the fixtures imported from store_support: used, by pytest


# -- the API's side ----------------------------------------------------------------------------


def test_insert_get_and_status(conn: Conn, store: Store) -> None:
    assert store.status(conn, NAME, "a") is None
    assert store.get(conn, NAME, "a") is None
    assert store.insert(conn, NAME, "a", "reserve", '{"sku": "x"}', '{"n": 1}', 0.0)
    assert store.status(conn, NAME, "a") == (0, False)
    got = store.get(conn, NAME, "a")
    assert got is not None
    (id_, name, instance_id, step, status, input, state, attempts, error, run_after,
     runner_id, created_at, updated_at, cancel_requested, key) = got
    assert isinstance(id_, int)
    assert (name, instance_id, step, status) == (NAME, "a", "reserve", 0)
    assert json.loads(input) == {"sku": "x"}  # text, for the codec
    assert json.loads(state) == {"n": 1}
    assert (attempts, error, runner_id, cancel_requested, key) == (0, None, None, False, None)
    assert run_after == created_at == updated_at
    assert run_after.tzinfo is not None
    assert store.status(conn, "other-saga", "a") is None


def test_insert_of_an_existing_instance_returns_false(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "a", input=1)
    assert not store.insert(conn, NAME, "a", "charge", "2", None, 0.0)
    assert db.row("a")["step"] == "reserve"
    assert store.insert(conn, "other-saga", "a", "charge", "2", None, 0.0)  # per saga name


def test_insert_delay_and_null_state(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "later", delay=90.25)
    r = db.row("later")
    assert r["run_after"] - r["created_at"] == timedelta(seconds=90.25)
    assert r["state"] is None
    assert r["input"] is None  # JSON null: jsonb 'null'


def test_insert_in_a_rolled_back_transaction(dsn: str, store: Store, conn: Conn) -> None:
    with psycopg.connect(dsn) as other:
        assert store.insert(other, NAME, "rb", "reserve", "1", None, 0.0)
        other.rollback()
    assert store.status(conn, NAME, "rb") is None


def test_call_replaces_step_input_attempts_and_error(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "a", input=1, state={"kept": True})
    db.execute("UPDATE {s}.instance SET attempts = 4, error = 'boom'")
    assert store.call(conn, NAME, "a", "charge", '{"x": 2}', 30.0)
    r = db.row("a")
    assert r["step"] == "charge"
    assert r["input"] == {"x": 2}
    assert r["state"] == {"kept": True}
    assert r["attempts"] == 0
    assert r["error"] is None
    assert r["run_after"] - r["updated_at"] == timedelta(seconds=30)
    assert r["updated_at"] > r["created_at"]


@pytest.mark.parametrize("status", [1, 2, 3])
def test_call_changes_nothing_unless_pending(
    conn: Conn, store: Store, db: Db, status: int
) -> None:
    add(conn, store, "a", input=1)
    db.execute("UPDATE {s}.instance SET status = %s", status)
    before = db.row("a")
    assert not store.call(conn, NAME, "a", "charge", "2", 0.0)
    assert db.row("a") == before
    assert store.status(conn, NAME, "a") == (status, False)


def test_call_of_unknown_instance(conn: Conn, store: Store) -> None:
    assert not store.call(conn, NAME, "ghost", "charge", "2", 0.0)
    add(conn, store, "a")
    assert not store.call(conn, "other-saga", "a", "charge", "2", 0.0)


# -- claiming ----------------------------------------------------------------------------------


def test_claim_marks_due_rows_running(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "a", input={"q": 1}, state=[1])
    claimed = store.claim(conn, RUNNER, NAME, STEPS, 10)
    assert len(claimed) == 1
    c = claimed[0]
    assert isinstance(c, Claimed)
    assert (c.instance, c.step, c.attempt) == ("a", "reserve", 1)
    assert json.loads(c.input or "") == {"q": 1}
    assert json.loads(c.state or "") == [1]
    r = db.row("a")
    assert (r["status"], r["runner_id"], r["attempts"]) == (1, RUNNER, 1)
    assert store.claim(conn, RUNNER, NAME, STEPS, 10) == []  # RUNNING: not claimed twice


def test_claim_honours_now_run_after_and_limit(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "soon", delay=60)
    add(conn, store, "later", delay=120)
    now = db.now()
    assert store.claim(conn, RUNNER, NAME, STEPS, 10) == []  # nothing due yet
    assert store.claim(conn, RUNNER, NAME, STEPS, 10, now=now - timedelta(hours=1)) == []
    first = store.claim(conn, RUNNER, NAME, STEPS, 1, now=now + timedelta(seconds=600))
    assert [c.instance for c in first] == ["soon"]  # the limit, earliest run_after first
    second = store.claim(conn, RUNNER, NAME, STEPS, 10, now=now + timedelta(seconds=90))
    assert second == []  # "later" is due at +120 s only
    third = store.claim(conn, RUNNER, NAME, STEPS, 10, now=now + timedelta(seconds=121))
    assert [c.instance for c in third] == ["later"]


def test_claim_is_limited_to_the_saga_and_its_steps(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "unknown-step", step="refund")
    assert store.insert(conn, "other-saga", "theirs", "reserve", "1", None, 0.0)
    add(conn, store, "mine", step="charge")
    claimed = store.claim(conn, RUNNER, NAME, STEPS, 10)
    assert [c.instance for c in claimed] == ["mine"]
    assert db.row("unknown-step")["status"] == 0
    assert db.row("theirs")["status"] == 0


def test_claim_skips_rows_locked_by_another_transaction(
    dsn: str, conn: Conn, store: Store, db: Db
) -> None:
    add(conn, store, "locked")
    add(conn, store, "free")
    with psycopg.connect(dsn) as other:
        other.execute(db.sql("SELECT 1 FROM {s}.instance WHERE instance_id = 'locked' FOR UPDATE"))
        claimed = store.claim(conn, RUNNER, NAME, STEPS, 10)  # does not wait on the lock
        assert [c.instance for c in claimed] == ["free"]
        other.rollback()
    assert [c.instance for c in store.claim(conn, RUNNER, NAME, STEPS, 10)] == ["locked"]


def test_next_due(conn: Conn, store: Store, db: Db) -> None:
    assert store.next_due(conn, NAME, STEPS) is None
    add(conn, store, "elsewhere", step="refund", delay=5)  # a step this worker lacks
    assert store.next_due(conn, NAME, STEPS) is None
    add(conn, store, "a", delay=60)
    add(conn, store, "b", delay=3600)
    due = store.next_due(conn, NAME, STEPS)
    assert due is not None
    assert 50 < due <= 60
    add(conn, store, "overdue", step="charge")
    db.execute("UPDATE {s}.instance SET run_after = now() - interval '1 minute'"
            " WHERE instance_id = 'overdue'")
    due = store.next_due(conn, NAME, STEPS)
    assert due is not None
    assert -61 < due <= -59  # negative: overdue
    claim_one(conn, store, "overdue")
    due = store.next_due(conn, NAME, STEPS)  # RUNNING rows do not count
    assert due is not None
    assert due > 50


# -- lease-guarded writes ----------------------------------------------------------------------


def stale_leases(lease: Lease) -> list[Lease]:
    return [lease._replace(runner_id="someone-else"), lease._replace(attempt=lease.attempt + 1),
            lease._replace(attempt=lease.attempt - 1), lease._replace(id=lease.id + 1000)]


def test_set_state(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "a", state={"v": 0})
    lease = claim_one(conn, store, "a")
    for stale in stale_leases(lease):
        assert not store.set_state(conn, stale, '{"v": -1}')
    assert db.row("a")["state"] == {"v": 0}
    assert store.set_state(conn, lease, '{"v": 1}')
    r = db.row("a")
    assert r["state"] == {"v": 1}
    assert (r["status"], r["runner_id"], r["attempts"]) == (1, RUNNER, 1)


def test_run_on(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "a", input=1, state={"s": 1})
    db.execute("UPDATE {s}.instance SET attempts = 2")
    lease = claim_one(conn, store, "a")
    assert lease.attempt == 3
    before = db.row("a")
    for stale in stale_leases(lease):
        assert store.run_on(conn, stale, "charge", "9", None) is None
    assert db.row("a") == before
    assert store.run_on(conn, lease, "charge", '{"next": 2}', None) == 1  # RUNNING
    r = db.row("a")
    assert (r["step"], r["input"], r["state"]) == ("charge", {"next": 2}, {"s": 1})
    assert (r["status"], r["runner_id"], r["attempts"], r["error"]) == (1, RUNNER, 1, None)
    # the new step's first attempt is this one: the lease goes on with attempt 1
    assert store.run_on(conn, lease, "reserve", "1", None) is None
    assert store.run_on(conn, lease._replace(attempt=1), "reserve", "3", '{"s": 2}') == 1
    r = db.row("a")
    assert (r["step"], r["input"], r["state"]) == ("reserve", 3, {"s": 2})


def test_schedule(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "a", state={"s": 1})
    lease = claim_one(conn, store, "a")
    before = db.row("a")
    for stale in stale_leases(lease):
        assert store.schedule(conn, stale, "charge", "2", None, 0.0) is None
    assert db.row("a") == before
    assert store.schedule(conn, lease, "charge", '"later"', None, 45.0) == 0  # PENDING
    r = db.row("a")
    assert (r["step"], r["input"], r["state"]) == ("charge", "later", {"s": 1})
    assert (r["status"], r["runner_id"], r["attempts"], r["error"]) == (0, None, 0, None)
    assert r["run_after"] - r["updated_at"] == timedelta(seconds=45)
    assert not store.schedule(conn, lease, "charge", "2", None, 0.0)  # the lease is spent
    lease = claim_due_later(db, store, "a")
    assert store.schedule(conn, lease, "reserve", "1", '{"s": 2}', 0.0) == 0
    assert db.row("a")["state"] == {"s": 2}  # a new state replaces the old


def claim_due_later(db: Db, store: Store, instance: str) -> Lease:
    """Claim *instance* even if it is due in up to an hour (through `now`)."""
    now = db.now()
    claimed = store.claim(db.conn, RUNNER, NAME, STEPS, 10, now=now + timedelta(hours=1))
    (c,) = [c for c in claimed if c.instance == instance]
    return Lease(c.id, RUNNER, c.attempt)


def test_complete(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "a", state={"s": 1})
    lease_a = claim_one(conn, store, "a")
    add(conn, store, "b", state={"s": 1})
    lease_b = claim_one(conn, store, "b")
    db.execute("UPDATE {s}.instance SET error = 'old' WHERE instance_id = 'a'")
    before = db.row("a")
    for stale in stale_leases(lease_a):
        assert store.complete(conn, stale, '"final"') is None
    assert db.row("a") == before
    assert store.complete(conn, lease_a, '"final"') == 2
    r = db.row("a")
    assert (r["status"], r["state"], r["runner_id"], r["error"]) == (2, "final", None, None)
    assert r["attempts"] == 1  # kept on COMPLETE
    assert store.complete(conn, lease_a, '"again"') is None
    assert store.complete(conn, lease_b, None) == 2  # None keeps the state
    r = db.row("b")
    assert (r["status"], r["state"]) == (2, {"s": 1})


def test_fail_retry_and_final(conn: Conn, store: Store, db: Db) -> None:
    add(conn, store, "a", state={"s": 1})
    lease = claim_one(conn, store, "a")
    before = db.row("a")
    for stale in stale_leases(lease):
        assert store.fail(conn, stale, error="x", final=False, delay=1.0) is None
        assert store.fail(conn, stale, error="x", final=True, delay=0.0) is None
    assert db.row("a") == before
    assert store.fail(conn, lease, error="Traceback: boom", final=False, delay=12.5) == 0
    r = db.row("a")
    assert (r["status"], r["runner_id"], r["error"]) == (0, None, "Traceback: boom")
    assert r["attempts"] == 1  # counts claims: kept for the next claim to increment
    assert r["run_after"] - r["updated_at"] == timedelta(seconds=12.5)
    assert r["state"] == {"s": 1}
    assert store.fail(conn, lease, error="again", final=True, delay=0.0) is None

    lease = claim_due_later(db, store, "a")
    assert lease.attempt == 2
    assert store.fail(conn, lease, error="dead letter", final=True, delay=0.0) == 3
    r = db.row("a")
    assert (r["status"], r["runner_id"], r["error"], r["attempts"]) == (3, None, "dead letter", 2)
    assert store.claim(conn, RUNNER, NAME, STEPS, 10, now=db.now() + timedelta(days=1)) == []


def test_release_gives_the_claim_back(conn: Conn, store: Store, db: Db) -> None:
    for name in ("a", "b", "c"):
        add(conn, store, name)
    claimed = {c.instance: c for c in store.claim(conn, RUNNER, NAME, STEPS, 10)}
    store.release(conn, "someone-else", [claimed["a"].id])  # not theirs: nothing happens
    assert db.row("a")["status"] == 1
    store.release(conn, RUNNER, [claimed["a"].id, claimed["b"].id])
    for name in ("a", "b"):
        r = db.row(name)
        assert (r["status"], r["runner_id"], r["attempts"]) == (0, None, 0)
    assert db.row("c")["status"] == 1
    store.release(conn, RUNNER, [])  # nothing to release is fine
    assert db.row("c")["status"] == 1
    assert {c.instance for c in store.claim(conn, RUNNER, NAME, STEPS, 10)} == {"a", "b"}


# -- NOTIFY ------------------------------------------------------------------------------------


LISTENING = "listening:1:runner"  # the runner row the listener stands for


@pytest.fixture
def listener(dsn: str, store: Store) -> Iterator[Conn]:
    """A LISTEN connection, and the idle runner row it stands for: the API notifies
    only while some runner is idle."""
    with psycopg.connect(dsn, autocommit=True) as c:
        store.register_runner(c, LISTENING, "host", 1, {NAME: list(STEPS)}, 3600)
        c.execute(sql.SQL("LISTEN {}").format(sql.Identifier(store.channel)))
        yield c


def marker(dsn: str, store: Store) -> None:
    """Commit a notification of our own: everything committed before it arrives first."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT pg_notify(%s, 'marker')", (store.channel,))


def payloads(listener: Conn, count: int) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=10, stop_after=count)]


def test_insert_notifies_on_commit(dsn: str, store: Store, listener: Conn) -> None:
    assert store.channel == f"pgsaga_{store.schema}"
    with psycopg.connect(dsn) as c:
        store.insert(c, NAME, "n", "reserve", "1", None, 0.0)
        c.commit()
    got = list(listener.notifies(timeout=10, stop_after=1))
    assert [(n.channel, n.payload) for n in got] == [(store.channel, NAME)]


def test_insert_does_not_notify_on_rollback(dsn: str, store: Store, listener: Conn) -> None:
    with psycopg.connect(dsn) as c:
        store.insert(c, NAME, "n", "reserve", "1", None, 0.0)
        c.rollback()
    marker(dsn, store)
    assert payloads(listener, 1) == ["marker"]


def test_duplicate_insert_does_not_notify(dsn: str, store: Store, listener: Conn) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        assert store.insert(c, NAME, "n", "reserve", "1", None, 0.0)
        assert payloads(listener, 1) == [NAME]
        assert not store.insert(c, NAME, "n", "reserve", "1", None, 0.0)
    marker(dsn, store)
    assert payloads(listener, 1) == ["marker"]


def test_writes_that_make_rows_runnable_notify(
    dsn: str, store: Store, conn: Conn, listener: Conn
) -> None:
    for name in ("a", "b", "c", "d"):
        add(conn, store, name)
    assert payloads(listener, 4) == [NAME] * 4
    assert store.call(conn, NAME, "a", "charge", "2", 0.0)
    assert payloads(listener, 1) == [NAME]
    claimed = {c.instance: c for c in store.claim(conn, RUNNER, NAME, STEPS, 10)}
    assert store.schedule(conn, Lease(claimed["a"].id, RUNNER, 1), "reserve", "1", None,
                          0.0) == 0
    assert payloads(listener, 1) == [NAME]
    store.release(conn, RUNNER, [claimed["b"].id])
    assert payloads(listener, 1) == [NAME]
    assert store.reap(conn) == ([], 2)  # c and d: RUNNER has no runner row
    assert payloads(listener, 1) == [NAME]  # one per saga name
    assert not store.call(conn, NAME, "ghost", "charge", "2", 0.0)  # no row: no wake-up
    marker(dsn, store)
    assert payloads(listener, 1) == ["marker"]


def test_the_api_notifies_only_while_a_runner_is_idle(
    dsn: str, store: Store, conn: Conn, listener: Conn
) -> None:
    def started(instance: str) -> list[str]:
        add(conn, store, instance)
        store.insert_many(conn, NAME, "reserve", [f"{instance}-many"], ["1"], None, 0.0)
        assert store.call(conn, NAME, instance, "charge", "2", 0.0)
        marker(dsn, store)
        return payloads(listener, 4)

    assert started("idle") == [NAME, NAME, NAME, "marker"]
    assert store.set_idle(conn, LISTENING, False)
    assert not store.set_idle(conn, LISTENING, False)  # no change, no write
    assert started("busy") == ["marker"]
    store.register_runner(conn, "other:2:runner", "host", 2, {NAME: list(STEPS)}, 3600)
    assert started("one of two idle") == [NAME, NAME, NAME, "marker"]  # a new row is idle
    store.delete_runner(conn, "other:2:runner")
    store.delete_runner(conn, LISTENING)
    assert started("no runner") == ["marker"]


# -- the queries file and the Store agree -----------------------------------------------------


def test_every_named_query_is_used_by_the_store() -> None:
    queries = named_queries()
    assert len(queries) >= 18  # a sanity check of the parser
    source = Path(saga.store.__file__).read_text()
    referenced = set(re.findall(r'"([a-z_]+)"', source))
    unused = sorted(queries.keys() - referenced)
    assert unused == [], f"named queries no Store method runs: {unused}"
    for name, text in queries.items():
        assert text.strip(), name
        assert "{schema}" in text, name


def test_store_rejects_a_bad_schema() -> None:
    with pytest.raises(ValueError, match="schema"):
        Store("bad schema")
    assert repr(Store("good")) == "<Store schema='good'>"
