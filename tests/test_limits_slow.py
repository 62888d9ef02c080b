"""Limits across worker processes (slow: `pytest -m slow`).

Workers run `tests.apps.limited`; each step records its interval, on the database
clock, in `{schema}.ran`. The fast versions of each rule are in tests/test_limits.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from saga import Saga
from tests.apps.limited import RAN_TABLE, build
from tests.faults.support import Workers
from tests.helpers import Db, wait_until
from tests.test_limits import overlaps

pytestmark = pytest.mark.slow

APP = "tests.apps.limited"


@pytest.fixture
def workers(dsn: str, schema: str, tmp_path: Path) -> Iterator[Workers]:
    made = Workers(dsn, schema, tmp_path)
    yield made
    made.close()


def setup(name: str, dsn: str, schema: str, db: Db) -> Saga:
    saga = build(name, schema, dsn)
    saga.init_db()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL(RAN_TABLE).format(schema=sql.Identifier(schema)))
    return saga


def done(db: Db, name: str) -> int:
    return int(db.one("SELECT count(*) FROM {s}.instance WHERE name = %s AND status = 2", name))


def start(workers: Workers, name: str, n: int, *options: str,
          hold: float | None = None) -> None:
    if hold is not None:
        os.environ["SAGA_TEST_HOLD"] = str(hold)
    try:
        for _ in range(n):
            workers.start(f"{APP}:{name}", "--workers", "8", "--poll-interval", "2", *options)
    finally:
        os.environ.pop("SAGA_TEST_HOLD", None)


def test_per_key_limit_of_one_across_three_processes(dsn: str, schema: str, db: Db,
                                                     workers: Workers) -> None:
    saga = setup("keyed", dsn, schema, db)
    saga.start_many("work", {f"i{i}": f"i{i}" for i in range(2000)},
                    key=lambda i, _: f"k{int(i[1:]) % 20}")
    start(workers, "keyed", 3)
    wait_until(lambda: done(db, "keyed") == 2000, timeout=240, interval=0.5)
    for key in [f"k{n}" for n in range(20)]:
        spans = db.rows("SELECT began, ended FROM {s}.ran WHERE key = %s", key)
        assert len(spans) == 100
        assert overlaps(spans) == 1, key
    assert overlaps(db.rows("SELECT began, ended FROM {s}.ran")) > 3


def test_running_limit_of_three_with_24_threads(dsn: str, schema: str, db: Db,
                                                workers: Workers) -> None:
    saga = setup("capped", dsn, schema, db)
    saga.start_many("work", {f"i{i}": f"i{i}" for i in range(300)})
    start(workers, "capped", 3, hold=0.02)
    wait_until(lambda: done(db, "capped") == 300, timeout=180, interval=0.5)
    assert overlaps(db.rows("SELECT began, ended FROM {s}.ran")) == 3


def test_rate_of_20_per_second_over_10_seconds(dsn: str, schema: str, db: Db,
                                               workers: Workers) -> None:
    saga = setup("paced", dsn, schema, db)
    saga.start_many("work", {f"i{i}": f"i{i}" for i in range(200)})
    start(workers, "paced", 3)
    wait_until(lambda: done(db, "paced") == 200, timeout=60, interval=0.5)
    starts = sorted(c for (c,) in db.rows("SELECT claimed FROM {s}.ran"))
    # A start counts when it is claimed: no window of one second holds more than 20
    # claims (less 5 ms: the claim's time and its entry in the rate log differ by a
    # few microseconds).
    busiest = max(sum(1 for t in starts[i:] if t < s + 1.0 - 0.005)
                  for i, s in enumerate(starts))
    assert busiest <= 20, busiest
    assert 9.0 <= starts[-1] - starts[0] <= 12.0


def test_kill_9_of_slot_holders_frees_their_slots(dsn: str, schema: str, db: Db,
                                                  workers: Workers) -> None:
    saga = setup("keyed", dsn, schema, db)
    saga.start_many("work", {f"i{i}": f"i{i}" for i in range(40)},
                    key=lambda i, _: f"k{int(i[1:]) % 4}")
    start(workers, "keyed", 2, "--heartbeat-timeout", "3", hold=0.5)
    wait_until(lambda: db.one("SELECT count(*) FROM {s}.instance WHERE status = 1") >= 4)
    holders = {pid for (pid,) in db.rows(
        "SELECT r.pid FROM {s}.runner AS r JOIN {s}.instance AS i ON i.runner_id = r.id"
        " WHERE i.status = 1")}
    for w in workers.started:
        if w.pid in holders:
            w.kill()
    start(workers, "keyed", 1, "--heartbeat-timeout", "3", hold=0.05)
    wait_until(lambda: done(db, "keyed") == 40, timeout=90, interval=0.5)
    for key in ("k0", "k1", "k2", "k3"):
        assert overlaps(db.rows("SELECT began, ended FROM {s}.ran WHERE key = %s", key)) == 1


def test_one_big_key_does_not_starve_nine_small_ones(dsn: str, schema: str, db: Db,
                                                     workers: Workers) -> None:
    """10,000 due sagas of one key, created first, and 100 of each of nine more keys.

    Round-robin over keys (per_key=2): while the nine small keys have work, the big one
    gets about a tenth of the claims. Bound: when the last small key finishes, the big
    one has done at most 2 x 100 (its share, twice over for the slack of many threads),
    far from the 10,000 it would have done first in plain run_after order.
    """
    saga = setup("fair", dsn, schema, db)
    saga.start_many("work", {f"big{i}": f"big{i}" for i in range(10_000)}, key="big")
    for k in range(9):
        saga.start_many("work", {f"s{k}-{i}": f"s{k}-{i}" for i in range(100)}, key=f"s{k}")
    began = time.monotonic()
    start(workers, "fair", 2, hold=0.0)
    wait_until(lambda: db.one("SELECT count(*) FROM {s}.ran WHERE key <> 'big'") == 900,
               timeout=180, interval=0.2)
    small_done = db.one("SELECT max(ended) FROM {s}.ran WHERE key <> 'big'")
    big_by_then = db.one("SELECT count(*) FROM {s}.ran WHERE key = 'big' AND ended <= %s",
                         small_done)
    print(f"small keys done in {time.monotonic() - began:.1f}s; big key by then: "
          f"{big_by_then} of 10000")
    assert big_by_then <= 200, big_by_then
