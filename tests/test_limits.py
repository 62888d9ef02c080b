"""Concurrency and rate limits: declared on the saga, enforced by the claim.

The in-process tests run a real worker against the test database; each step records
its start and end (database clock) in a side table, and the intervals are checked.
The long multi-process versions are in tests/test_limits_slow.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from saga import Saga, Status
from saga.limits import Limit
from saga.store import Claim
from tests.helpers import Db, running, wait_until

Interval = tuple[str, str, float, float]  # (key, step, start, end) in epoch seconds


def side_table(db: Db) -> None:
    db.execute("CREATE TABLE {s}.ran (instance text, key text, step text,"
               " began float8, ended float8)")


def recording(saga: Saga, db: Db, hold: float = 0.02) -> Callable[..., Any]:
    """A step (its input: the instance id) that records its interval and the row's key
    in {s}.ran, in the step's own transaction."""
    insert = db.sql("INSERT INTO {s}.ran SELECT instance_id, key, step, %s, %s"
                    " FROM {s}.instance WHERE name = %s AND instance_id = %s")

    def work(instance: str, *, conn: Any) -> None:
        began = time.time()
        time.sleep(hold)
        conn.execute(insert, (began, time.time(), saga.name, instance))

    return work


def overlaps(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one moment."""
    edges = sorted([(b, 1) for b, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, delta in edges:
        now += delta
        most = max(most, now)
    return most


def intervals(db: Db, **where: str) -> list[tuple[float, float]]:
    cond = " AND ".join(f"{k} = %s" for k in where) or "true"
    return [(b, e) for b, e in db.rows(f"SELECT began, ended FROM {{s}}.ran WHERE {cond}",
                                       *where.values())]


# -- declaring ------------------------------------------------------------------------


def test_bad_limits_are_refused_where_declared(make_saga: Callable[..., Saga]) -> None:
    s = make_saga()

    @s.step
    def one(n: int) -> None: ...

    for bad, message in [({"per_key": 0}, "per_key must be an integer >= 1"),
                         ({"running": -1}, "running must be an integer >= 1"),
                         ({"running": 1.5}, "running must be an integer >= 1"),
                         ({"rate": 5, "per": 0}, "per must be a number of seconds > 0"),
                         ({"rate": 5, "per": float("inf")}, "per must be"),
                         ({"per": 2.0, "running": 1}, "per= is the window of a rate"),
                         ({}, "needs per_key=, running= or rate=")]:
        with pytest.raises(ValueError, match=message):
            s.limit(one, **bad)
    with pytest.raises(ValueError, match="unknown step 'nope'"):
        s.limit("nope", running=1)
    s.limit(one, running=2)
    with pytest.raises(ValueError, match="there is already running=2 on one"):
        s.limit(one, running=3)
    assert s.limits == (Limit("running", 2, ("one",)),)


def test_a_spec_refuses_a_limit_on_a_step_it_does_not_have(saga: Saga) -> None:
    @saga.step
    def one(n: int) -> None: ...

    saga.limits = (Limit("key", 1, ("gone",)),)
    with pytest.raises(ValueError, match="per_key=1 on gone: saga 'test' has no step 'gone'"):
        saga.spec()


def test_keys_are_checked_at_start(saga: Saga, db: Db) -> None:
    @saga.step
    def one(n: int) -> None: ...

    with pytest.raises(TypeError, match="key must be a string, got int"):
        saga.start("a", one, 1, key=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key must be 1 to 256 characters"):
        saga.start("a", one, 1, key="x" * 257)
    saga.start("a", one, 1, key="acct-1")  # a key without a limit is just stored
    assert saga.get("a").key == "acct-1"
    saga.limit(per_key=1)
    with pytest.raises(ValueError, match="saga 'test' has a per-key limit: start it with key="):
        saga.start("b", one, 1)
    with pytest.raises(ValueError, match="per-key limit"):
        saga.start_many(one, {"c": 1})
    with pytest.raises(TypeError, match=r"items\[1\] \(instance 'e'\): key must be a string"):
        saga.start_many(one, {"d": 1, "e": 2}, key=lambda i, n: n if n == 2 else "k")
    assert saga.start_many(one, {"d": 1, "e": 2}, key=lambda i, n: f"k{n}") == []
    assert [saga.get(i).key for i in "de"] == ["k1", "k2"]
    saga.start_many(one, {"f": 1}, key="same")
    assert saga.get("f").key == "same"


# -- the claim, statement by statement --------------------------------------------------


def claim(saga: Saga, db: Db, limit: int = 10, after: str | None = None,
          runner: str = "r1") -> list[str]:
    spec = saga.spec()
    found = saga.store.claim_or_due(db.conn, Claim(runner, saga.name, list(spec.steps),
                                                   limit, spec.limits_json, after))
    return [row.instance for row in found.rows]


def test_per_key_limit_holds_back_rows_without_counting_an_attempt(saga: Saga,
                                                                   db: Db) -> None:
    @saga.step
    def one(n: int) -> None: ...

    saga.limit(per_key=2)
    saga.start_many(one, {f"a{i}": i for i in range(5)}, key="a")
    saga.start_many(one, {f"b{i}": i for i in range(5)}, key="b")
    assert sorted(g[0] for g in claim(saga, db)) == ["a", "a", "b", "b"]
    assert claim(saga, db) == []  # both keys full
    waiting = db.rows("SELECT attempts, status FROM {s}.instance WHERE instance_id = 'a2'")
    assert waiting == [(0, Status.PENDING)]
    db.execute("UPDATE {s}.instance SET status = 2 WHERE id = (SELECT min(id)"
               " FROM {s}.instance WHERE key = 'a' AND status = 1)")  # a slot frees
    assert [g[0] for g in claim(saga, db)] == ["a"]
    # A dead runner's rows go back to PENDING: their slots come back with them.
    db.execute("UPDATE {s}.instance SET status = 0, runner_id = NULL WHERE status = 1")
    assert db.one("SELECT count(*) FROM {s}.instance WHERE status = 0") == 9
    assert sorted(g[0] for g in claim(saga, db)) == ["a", "a", "b", "b"]
    assert saga.limit_stats(conn=db.conn) == [("per_key=2 on *", 4, 5)]
    waiting = db.rows("SELECT attempts FROM {s}.instance WHERE status = 0")
    assert waiting
    assert all(attempts <= 1 for (attempts,) in waiting)


def test_rows_without_a_key_are_bound_by_no_key(saga: Saga, db: Db) -> None:
    """Started before the per-key limit was declared: claimed while they are the oldest."""
    @saga.step
    def one(n: int) -> None: ...

    saga.start_many(one, {f"old{i}": i for i in range(3)})
    saga.limit(per_key=1)
    saga.start_many(one, {f"new{i}": i for i in range(3)}, key="k")
    got = claim(saga, db)
    assert sorted(g for g in got if g.startswith("old")) == ["old0", "old1", "old2"]
    assert len([g for g in got if g.startswith("new")]) == 1


def test_keys_are_visited_round_robin_from_the_last_key_claimed(saga: Saga, db: Db) -> None:
    @saga.step
    def one(n: int) -> None: ...

    saga.limit(per_key=5)
    for key in "abcd":
        for i in range(3):
            saga.start(f"{key}{i}", one, i, key=key)
    assert claim(saga, db, limit=1, after="b") == ["c0"]
    assert claim(saga, db, limit=1, after="c") == ["d0"]
    assert claim(saga, db, limit=1, after="d") == ["a0"]  # wraps around
    assert claim(saga, db, limit=4, after="a") == ["b0", "b1", "b2", "c1"]


def test_running_limit_counts_every_key_and_the_steps_together(saga: Saga, db: Db) -> None:
    @saga.step
    def one(n: int) -> None: ...

    @saga.step
    def two(n: int) -> None: ...

    @saga.step
    def free(n: int) -> None: ...

    saga.limit(one, two, running=3)
    for i in range(3):
        saga.start(f"one{i}", one, i, key=f"k{i}")
        saga.start(f"two{i}", two, i)
        saga.start(f"free{i}", free, i)
    got = claim(saga, db)
    assert len([g for g in got if not g.startswith("free")]) == 3
    assert {g for g in got if g.startswith("free")} == {"free0", "free1", "free2"}
    assert claim(saga, db) == []
    # Going on from one to two at once keeps the slot; to free too; not the other way.
    spec = saga.spec()
    assert spec.runs_on("one", "two")
    assert spec.runs_on("one", "free")
    assert not spec.runs_on("free", "one")


def test_rate_limit_counts_starts_in_a_sliding_window(saga: Saga, db: Db) -> None:
    @saga.step
    def one(n: int) -> None: ...

    saga.limit(one, rate=3, per=0.5)
    saga.start_many(one, {f"i{i}": i for i in range(8)})
    assert len(claim(saga, db)) == 3
    spec = saga.spec()
    found = saga.store.claim_or_due(db.conn, Claim("r", saga.name, list(spec.steps), 10,
                                                   spec.limits_json))
    assert found.rows == []
    assert found.due_in is not None
    assert 0 < found.due_in <= 0.5
    db.execute("UPDATE {s}.instance SET status = 2 WHERE status = 1")  # finishing frees nothing
    assert claim(saga, db) == []
    time.sleep(found.due_in + 0.05)
    assert len(claim(saga, db)) == 3
    assert not spec.runs_on("one", "one")  # every start is counted by a claim


# -- a worker -------------------------------------------------------------------------


def test_a_worker_never_overlaps_two_steps_of_one_key(saga: Saga, db: Db) -> None:
    side_table(db)
    work = saga.step(recording(saga, db))
    saga.limit(per_key=1)
    saga.start_many(work, {f"i{i}": f"i{i}" for i in range(60)},
                    key=lambda i, _: f"k{int(i[1:]) % 4}")
    with running(saga, db, workers=8, poll_interval=5.0):
        wait_until(lambda: db.statuses() == {Status.COMPLETE: 60}, timeout=30)
    for key in ("k0", "k1", "k2", "k3"):
        assert overlaps(intervals(db, key=key)) == 1, key
    assert overlaps(intervals(db)) > 1  # the keys did run side by side


def test_a_freed_slot_is_taken_without_waiting_for_the_poll(saga: Saga, db: Db) -> None:
    """With a 30 s poll, 20 one-at-a-time steps of one key finish in well under 30 s
    only if each finished step leads to the next claim at once."""
    side_table(db)
    work = saga.step(recording(saga, db, hold=0.01))
    saga.limit(work, running=1)
    saga.start_many(work, {f"i{i}": f"i{i}" for i in range(20)})
    began = time.monotonic()
    with running(saga, db, workers=4, poll_interval=30.0):
        wait_until(lambda: db.statuses() == {Status.COMPLETE: 20}, timeout=20)
    assert time.monotonic() - began < 10
    assert overlaps(intervals(db)) == 1


def test_limits_travel_in_the_spec_as_json(saga: Saga) -> None:
    @saga.step
    def one(n: int) -> None: ...

    @saga.step
    def two(n: int) -> None: ...

    saga.limit(per_key=1)
    saga.limit(two, rate=20, per=1.0)
    assert saga.spec().limits_json is not None
    assert json.loads(saga.spec().limits_json or "") == [
        {"id": "key:*", "kind": "key", "n": 1, "per": 0.0, "steps": ["one", "two"]},
        {"id": "rate:two", "kind": "rate", "n": 20, "per": 1.0, "steps": ["two"]}]
    plain = Saga("plain", "postgresql://unused")

    @plain.step
    def three(n: int) -> None: ...

    assert plain.spec().limits_json is None  # no limit: the plain claim


def test_stats_show_each_limit_a_live_runner_enforces(saga: Saga, db: Db) -> None:
    from saga.admin.queries import AdminStore

    side_table(db)
    work = saga.step(recording(saga, db, hold=1.0))
    saga.limit(per_key=1)
    saga.start_many(work, {f"i{i}": f"i{i}" for i in range(3)}, key="one")
    with running(saga, db, workers=4):
        wait_until(lambda: AdminStore(db.schema).stats(db.conn).limits
                   == [("test", "per_key=1 on work", 1, 2)], timeout=10)
    from saga.admin.commands import stats_tables

    text = stats_tables([], [], [], limits=[{"saga": "test", "limit": "per_key=1 on work",
                                             "in_use": 1, "waiting": 2}])[-1]
    assert text.splitlines()[0].startswith("limits")
    assert "per_key=1 on work" in text


def test_the_reaper_frees_a_dead_runners_slots(saga: Saga, db: Db) -> None:
    @saga.step
    def one(n: int) -> None: ...

    saga.limit(per_key=1)
    saga.start_many(one, {f"i{i}": i for i in range(3)}, key="k")
    db.execute("INSERT INTO {s}.runner (id, hostname, pid, serves, expires_at)"
               " VALUES ('dead', 'h', 1, '{{}}', now() - interval '1 minute')")
    assert len(claim(saga, db, runner="dead")) == 1
    assert claim(saga, db) == []  # the slot is the dead runner's
    dead, recovered = saga.store.reap(db.conn)
    assert (dead, recovered) == (["dead"], 1)
    assert len(claim(saga, db)) == 1


def test_a_limited_claim_carries_the_key_and_the_trace_context(saga: Saga, db: Db) -> None:
    """claim_limited returns what claim_due does: the trace context (and counts the claim)."""
    @saga.step
    def one(n: int) -> None: ...

    saga.limit(per_key=1)
    saga.start("t1", one, 1, key="k")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    db.execute("UPDATE {s}.instance SET trace_parent = %s WHERE instance_id = 't1'", parent)
    spec = saga.spec()
    found = saga.store.claim_or_due(db.conn, Claim("r1", saga.name, list(spec.steps), 10,
                                                   spec.limits_json, None))
    assert [(r.instance, r.key, r.trace) for r in found.rows] == [("t1", "k", f"{parent} 1")]
    assert db.one("SELECT claims FROM {s}.instance WHERE instance_id = 't1'") == 1
