"""Schedules served by real worker processes and `--drain` runs at once, and through
`kill -9`: every tick of a one-second schedule exists exactly once (slow tests)."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from saga import Saga
from tests.apps import ticking
from tests.helpers import Db
from tests.test_worker import Worker, run_worker, worker_env

pytestmark = pytest.mark.slow

APP = "tests.apps.ticking:saga"
WINDOW = 15.0  # seconds of ticking


@pytest.fixture
def ticking_saga(dsn: str, schema: str) -> Iterator[Saga]:
    with ticking.build(schema, dsn) as saga:
        saga.init_db()
        yield saga


def moments(db: Db) -> list[datetime]:
    """The ticks made, from the instance ids (`beat@<UTC>`), in order."""
    ids = [i for (i,) in db.rows("SELECT instance_id FROM {s}.instance WHERE name = 'ticking'")]
    assert all(i.startswith("beat@") for i in ids)
    return sorted(datetime.fromisoformat(i.removeprefix("beat@").replace("Z", "+00:00"))
                  for i in ids)


def assert_every_tick_once(db: Db, began: datetime, ended: datetime,
                           logs: list[str]) -> None:
    """Every second from about *began* to *ended* has one tick, and no ticker ever
    planned a tick that another had made (the row lock kept them apart: the unique id
    was not needed)."""
    assert not [line for log in logs for line in log.splitlines() if "existed already" in line]
    found = moments(db)
    made = db.one("SELECT ticks FROM {s}.schedule WHERE name = 'beat'")
    assert made == len(found)
    gaps = [(a, b) for a, b in pairwise(found) if b - a != timedelta(seconds=1)]
    assert not gaps, f"ticks missing or doubled between {gaps[:5]}"
    # Ticking went on for most of the window (the workers take a while to start on a
    # busy machine), up to about its end.
    assert found[-1] - found[0] >= timedelta(seconds=WINDOW / 2)
    assert began <= found[0]
    assert found[-1] >= ended - timedelta(seconds=5)


def test_three_workers_and_two_drains_make_every_tick_exactly_once(
        ticking_saga: Saga, dsn: str, schema: str, db: Db, tmp_path: Path) -> None:
    env = worker_env(dsn, schema)
    began = db.now()
    workers = [Worker([APP, "--workers", "2"], env, tmp_path / f"worker-{i}") for i in range(3)]
    stop = threading.Event()
    drains: list[int] = []
    logs: list[str] = []

    def drain_loop() -> None:
        while not stop.is_set():
            done = run_worker(APP, "--drain", dsn=dsn, schema=schema)
            drains.append(done.returncode)
            logs.append(done.stderr)

    drainers = [threading.Thread(target=drain_loop) for _ in range(2)]
    for t in drainers:
        t.start()
    try:
        stop.wait(WINDOW)
    finally:
        stop.set()
        for t in drainers:
            t.join(60)
        for w in workers:
            w.send(signal.SIGTERM)
        codes = [w.wait(60) for w in workers]
    ended = db.now()
    assert codes == [0, 0, 0], [w.stderr()[-2000:] for w in workers]
    assert drains
    assert set(drains) == {0}
    assert_every_tick_once(db, began, ended - timedelta(seconds=1),
                           logs + [w.stderr() for w in workers])


def test_kill_9_in_a_loop_loses_and_doubles_no_tick(
        ticking_saga: Saga, dsn: str, schema: str, db: Db, tmp_path: Path) -> None:
    env = worker_env(dsn, schema)
    began = db.now()
    alive = [Worker([APP, "--workers", "1", "--heartbeat-timeout", "2"], env,
                    tmp_path / f"worker-{i}") for i in range(2)]
    everyone = list(alive)
    started, killed = len(alive), 0
    deadline = time.monotonic() + WINDOW
    rng = random.Random(7)
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.5))  # a kill comes at any moment of a tick
        victim = alive.pop(rng.randrange(len(alive)))
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        killed += 1
        alive.append(Worker([APP, "--workers", "1", "--heartbeat-timeout", "2"], env,
                            tmp_path / f"worker-{started}"))
        everyone.append(alive[-1])
        started += 1
    for w in alive:
        w.send(signal.SIGTERM)  # one just started may not handle it yet: it dies of it
        assert w.wait(60) in (0, -signal.SIGTERM)
    last = run_worker(APP, "--drain", dsn=dsn, schema=schema)  # catches up
    assert last.returncode == 0, last.stderr
    ended = db.now()
    assert killed >= 5
    assert_every_tick_once(db, began, ended, [w.stderr() for w in everyone] + [last.stderr])
