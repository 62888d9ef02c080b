"""`saga.store.Store`, the runners' queries: register, heartbeat, delete, reap, release_stale."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from saga.store import Lease, Store
from tests.helpers import Db, seconds
from tests.store_support import NAME, RUNNER, STEPS, Conn, add, claim_one, conn, store

__all__ = ["conn", "store"]  # the fixtures imported from store_support: used, by pytest

TIMEOUT = 30.0  # the heartbeat timeout the runners of these tests register with


def add_claimed(conn: Conn, store: Store, instance: str, runner: str = RUNNER) -> Lease:
    add(conn, store, instance)
    return claim_one(conn, store, instance, runner)


def runner_row(db: Db, runner_id: str) -> dict[str, Any] | None:
    return db.record("SELECT * FROM {s}.runner WHERE id = %s", runner_id)


def age_runner(db: Db, runner_id: str, seconds: float) -> None:
    """Make the runner's last heartbeat *seconds* old (its timeout: TIMEOUT)."""
    assert db.execute("UPDATE {s}.runner SET heartbeat_at = now() - make_interval(secs => %s),"
                      " expires_at = now() - make_interval(secs => %s) + make_interval(secs => %s)"
                      " WHERE id = %s", seconds, seconds, TIMEOUT, runner_id) == 1


def test_register_heartbeat_and_delete_runner(conn: Conn, store: Store, db: Db) -> None:
    serves = {NAME: STEPS}
    store.register_runner(conn, RUNNER, "host", 4242, serves, TIMEOUT)
    r = runner_row(db, RUNNER)
    assert r is not None
    assert (r["hostname"], r["pid"], r["serves"]) == ("host", 4242, serves)
    assert r["heartbeat_at"] == r["started_at"]
    assert seconds(r["expires_at"], r["heartbeat_at"]) == pytest.approx(TIMEOUT, abs=0.01)
    age_runner(db, RUNNER, 100)
    assert store.heartbeat(conn, RUNNER, 7.0)  # each runner sets its own expiry
    r = runner_row(db, RUNNER)
    assert r is not None
    assert r["heartbeat_at"] > r["started_at"]
    assert seconds(r["expires_at"], r["heartbeat_at"]) == pytest.approx(7.0)
    age_runner(db, RUNNER, 100)
    store.register_runner(conn, RUNNER, "host", 4242, {"other": ["x"]}, TIMEOUT)  # again
    r = runner_row(db, RUNNER)
    assert r is not None
    assert r["heartbeat_at"] > r["started_at"]
    assert r["serves"] == {**serves, "other": ["x"]}  # what it serves is merged
    assert not store.heartbeat(conn, "never-registered", TIMEOUT)
    store.delete_runner(conn, RUNNER)
    assert runner_row(db, RUNNER) is None
    assert not store.heartbeat(conn, RUNNER, TIMEOUT)  # reaped or deleted: it learns it
    store.delete_runner(conn, RUNNER)  # idempotent


def test_reap_recovers_the_rows_of_silent_runners(conn: Conn, store: Store, db: Db) -> None:
    store.register_runner(conn, "dead", "h", 1, {NAME: STEPS}, TIMEOUT)
    store.register_runner(conn, "alive", "h", 2, {NAME: STEPS}, TIMEOUT)
    add_claimed(conn, store, "d1", runner="dead")
    add_claimed(conn, store, "d2", runner="dead")
    add_claimed(conn, store, "a1", runner="alive")
    assert store.complete(conn, add_claimed(conn, store, "done", runner="dead"), None) == 2
    add_claimed(conn, store, "orphan", runner="ghost")  # no runner row at all
    db.execute("UPDATE {s}.instance SET step = 'charge' WHERE instance_id = 'orphan'")
    age_runner(db, "dead", 120)
    age_runner(db, "alive", 5)

    dead, recovered = store.reap(conn)
    assert dead == ["dead"]
    assert recovered == 3
    assert runner_row(db, "dead") is None
    assert runner_row(db, "alive") is not None
    for name in ("d1", "d2"):
        r = db.row(name)
        assert (r["status"], r["runner_id"]) == (0, None)
        assert r["error"] == "runner dead stopped during step reserve"
        assert r["attempts"] == 1  # the claim counted: crash loops end in ERROR
        assert r["run_after"] < r["updated_at"]  # due, and keeps its place in the queue
    r = db.row("orphan")
    assert (r["status"], r["runner_id"]) == (0, None)
    assert r["error"] == "runner ghost stopped during step charge"
    r = db.row("a1")
    assert (r["status"], r["runner_id"], r["error"]) == (1, "alive", None)
    assert db.row("done")["status"] == 2

    assert store.reap(conn) == ([], 0)  # nothing left to do
    age_runner(db, "alive", TIMEOUT + 1)  # silent for longer than its own timeout
    assert store.reap(conn) == (["alive"], 1)


def test_reap_skips_rows_locked_by_another_reaper(
    dsn: str, conn: Conn, store: Store, db: Db
) -> None:
    add(conn, store, "o1")
    add(conn, store, "o2")
    assert len(store.claim(conn, "ghost", NAME, STEPS, 10)) == 2
    with psycopg.connect(dsn) as other:
        other.execute(db.sql("SELECT 1 FROM {s}.instance WHERE instance_id = 'o1' FOR UPDATE"))
        assert store.reap(conn) == ([], 1)
        other.rollback()
    assert db.row("o1")["status"] == 1
    assert db.row("o2")["status"] == 0
    assert store.reap(conn) == ([], 1)


def test_release_stale(conn: Conn, store: Store, db: Db) -> None:
    add_claimed(conn, store, "theirs", runner="other")
    for name in ("old", "busy", "young"):
        add(conn, store, name)
    claimed = {c.instance: c for c in store.claim(conn, RUNNER, NAME, STEPS, 10)}
    db.execute("UPDATE {s}.instance SET updated_at = now() - interval '10 minutes'"
                         " WHERE instance_id IN ('old', 'busy', 'theirs')")

    assert store.release_stale(conn, RUNNER, [claimed["busy"].id], 60.0) == 1
    r = db.row("old")
    assert (r["status"], r["runner_id"], r["attempts"]) == (0, None, 1)
    assert r["run_after"] < r["updated_at"]  # due, and keeps its place in the queue
    assert db.row("busy")["status"] == 1  # in flight: excluded
    assert db.row("young")["status"] == 1  # updated recently: too young
    assert db.row("theirs")["runner_id"] == "other"  # another runner's row
    assert store.release_stale(conn, RUNNER, [], 3600.0) == 0  # age honoured
    assert store.release_stale(conn, RUNNER, [], 60.0) == 1  # busy, now not in flight
    assert db.row("busy")["status"] == 0

