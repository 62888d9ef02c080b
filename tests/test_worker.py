"""The worker process, `python -m saga.worker`, run as a subprocess on a real server.

The sagas it runs live in tests/apps; their steps log each execution into
`{schema}.executed`, which is what the tests count.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from saga import Saga, Status
from tests.apps import chain, create_log, other
from tests.helpers import Db, wait_until

ROOT = Path(__file__).parents[1]
WORKER = (sys.executable, "-m", "saga.worker")
CHAIN, OTHER = "tests.apps.chain:saga", "tests.apps.other:saga"
CHAIN_MODULE = "tests.apps.chain"
TIMEOUT = 30.0  # the longest any one worker command may take
SUMMARY = re.compile(r"drained: \d+ steps run, \d+ completed, \d+ failed, \d+ retried, "
                     r"\d+ cancelled in \d+\.\ds")


def worker_env(dsn: str | None, schema: str | None) -> dict[str, str]:
    """The environment of a worker: SAGA_DSN only if *dsn* is given."""
    env = {k: v for k, v in os.environ.items() if k != "SAGA_DSN"}
    if schema is not None:
        env["SAGA_TEST_SCHEMA"] = schema
    if dsn is not None:
        env["SAGA_DSN"] = dsn
    return env


def run_worker(
    *args: str, dsn: str | None = None, schema: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a worker to its end (killed after TIMEOUT seconds) and capture its output."""
    return subprocess.run(
        [*WORKER, *args], cwd=ROOT, env=worker_env(dsn, schema), capture_output=True,
        text=True, timeout=TIMEOUT, check=False,
    )


class Worker:
    """A worker running in the background; its output goes to files, not to a pipe."""

    def __init__(self, args: list[str], env: dict[str, str], logs: Path,
                 command: tuple[str, ...] = WORKER) -> None:
        self.out, self.err = logs.with_suffix(".out"), logs.with_suffix(".err")
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([*command, *args], cwd=ROOT, env=env,
                                         stdout=out, stderr=err)
        self.pid = self.proc.pid

    def __repr__(self) -> str:
        return f"<Worker pid={self.pid} returncode={self.proc.returncode}>"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.err.read_text()

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Return the exit code; fail the test if the process is still running at *timeout*."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self} still running after {timeout}s; stderr:\n{self.stderr()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def chain_saga(dsn: str, schema: str, db: Db) -> Iterator[Saga]:
    """The test's handle on the "chain" saga, its schema migrated, the step log created."""
    with chain.build(schema, dsn) as saga:
        saga.init_db()
        create_log(db.conn, schema)
        yield saga


@pytest.fixture
def other_saga(dsn: str, schema: str, chain_saga: Saga) -> Iterator[Saga]:
    with other.build(schema, dsn) as saga:
        yield saga


@pytest.fixture
def spawn(dsn: str, schema: str, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start background workers (SAGA_DSN set) that are killed when the test ends."""
    started: list[Worker] = []

    def start(*args: str, command: tuple[str, ...] = WORKER) -> Worker:
        worker = Worker(list(args), worker_env(dsn, schema), tmp_path / f"worker-{len(started)}",
                        command)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()


def start_many(dsn: str, saga: Saga, step: str, ids: list[str], **input: object) -> None:
    """Start one instance per id, in one transaction."""
    with psycopg.connect(dsn) as conn:
        for id_ in ids:
            saga.start(id_, step, {"id": id_, **input}, conn=conn)


def seconds_to_complete(saga: Saga, instance: str, step: str, timeout: float = 10.0) -> float:
    """Start *instance* and return how long it took to become COMPLETE."""
    started = time.monotonic()
    saga.start(instance, step, {"id": instance})
    wait_until(lambda: saga.get(instance).status == Status.COMPLETE, timeout, interval=0.02)
    return time.monotonic() - started


# -- drain --------------------------------------------------------------------------------


def test_drain_runs_what_is_due_and_prints_a_summary(
    dsn: str, schema: str, chain_saga: Saga, db: Db
) -> None:
    start_many(dsn, chain_saga, "first", [f"c{i}" for i in range(20)])
    chain_saga.start("late", "later", {"id": "late"})  # goes on with `third` in an hour
    chain_saga.start("bad", "broken", {"id": "bad"})  # raises; the retry waits a minute

    @chain_saga.step
    def newer(input: object) -> None:
        """A step of a newer release, which the worker does not know: it leaves it alone."""

    chain_saga.start("new", newer, {"id": "new"})

    result = run_worker(CHAIN, "--drain", "--workers", "4", "--dsn", dsn, schema=schema)

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert SUMMARY.fullmatch(line), line
    assert line.startswith(
        "drained: 62 steps run, 20 completed, 0 failed, 1 retried, 0 cancelled in ")
    assert db.statuses() == {Status.COMPLETE: 20, Status.PENDING: 3}
    new = chain_saga.get("new")
    assert (new.status, new.attempts, new.error) == (Status.PENDING, 0, None)
    late = chain_saga.get("late")
    assert (late.status, late.step, late.attempts) == (Status.PENDING, "third", 0)
    assert db.one("SELECT %s > now() + interval '59 minutes'", late.run_after)
    bad = chain_saga.get("bad")
    assert (bad.status, bad.step, bad.attempts) == (Status.PENDING, "broken", 1)
    assert "RuntimeError: broken step" in (bad.error or "")
    counts = dict(db.rows("SELECT step, count(*) FROM {s}.executed GROUP BY step"))
    assert counts == {"first": 20, "second": 20, "third": 20, "later": 1, "broken": 1}


def test_one_worker_runs_sagas_from_two_modules(
    dsn: str, schema: str, chain_saga: Saga, other_saga: Saga, db: Db
) -> None:
    start_many(dsn, chain_saga, "first", ["c1", "c2"])
    start_many(dsn, other_saga, "only", ["o1", "o2", "o3"])

    result = run_worker(CHAIN, OTHER, "--drain", dsn=dsn, schema=schema)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "drained: 9 steps run, 5 completed, 0 failed, 0 retried, 0 cancelled in ")
    assert db.statuses() == {Status.COMPLETE: 5}
    assert [other_saga.get(f"o{i}").status for i in (1, 2, 3)] == [Status.COMPLETE] * 3


# -- startup errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_module:saga"], "cannot import module 'no_such_module'"),
        ([f"{CHAIN_MODULE}:nope"], "has no attribute 'nope'"),
        ([f"{CHAIN_MODULE}:build"], "is a function, not a saga.Saga"),
        ([CHAIN_MODULE], "expected MODULE:ATTRIBUTE"),
    ],
    ids=["no-module", "no-attribute", "not-a-saga", "no-colon"],
)
def test_a_bad_target_is_a_usage_error(
    dsn: str, schema: str, args: list[str], message: str
) -> None:
    result = run_worker(*args, dsn=dsn, schema=schema)

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("pgsaga: error: ")
    assert message in line
    assert result.stdout == ""


@pytest.mark.parametrize("option", ["--workers", "--claim-batch"])
def test_workers_and_claim_batch_must_be_positive(dsn: str, schema: str, option: str) -> None:
    result = run_worker(CHAIN, option, "0", dsn=dsn, schema=schema)

    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [errors[-1]]
    assert f"{option} must be at least 1, got 0" in errors[0]
    assert result.stderr.splitlines()[-1] == errors[0]


def test_an_unreachable_database_fails_without_showing_the_password(schema: str) -> None:
    result = run_worker(CHAIN, "--dsn", "postgresql://u:s3cret@127.0.0.1:1/x", schema=schema)

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("pgsaga: error: cannot connect to ")
    assert "127.0.0.1" in line
    assert "s3cret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "bad_dsn",
    ["postgresql://u:s3cret@[::1/x", "postgresql://u:s3cret@127.0.0.1:1/x?bogus=1"],
    ids=["unclosed-bracket", "unknown-parameter"],
)
def test_a_malformed_dsn_fails_without_showing_the_password(schema: str, bad_dsn: str) -> None:
    result = run_worker(CHAIN, "--dsn", bad_dsn, schema=schema)

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("pgsaga: error: ")
    assert "s3cret" not in result.stdout + result.stderr


def test_missing_tables_fail_with_a_hint_to_migrate(dsn: str, schema: str) -> None:
    result = run_worker(CHAIN, "--log-level", "WARNING", dsn=dsn, schema=schema)

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("pgsaga: error: the saga tables are missing")
    assert line.endswith(f"run saga.init_db() or `python -m saga migrate --schema {schema}`")


def test_no_database_at_all_fails(schema: str) -> None:
    result = run_worker(CHAIN, schema=schema)  # no --dsn, no SAGA_DSN, no DSN in the saga

    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert line == ("pgsaga: error: saga 'chain' has no database: "
                    "pass --dsn or set SAGA_DSN")


def test_help_exits_0() -> None:
    result = run_worker("--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m saga.worker")
    assert "--drain" in result.stdout


# -- several processes --------------------------------------------------------------------


def test_three_processes_run_every_step_exactly_once(
    dsn: str, chain_saga: Saga, db: Db, spawn: Callable[..., Worker]
) -> None:
    workers = [spawn(CHAIN, "--workers", "4", "--poll-interval", "0.5", "--grace", "10")
               for _ in range(3)]
    wait_until(lambda: len(db.runner_ids()) == 3, timeout=20)

    start_many(dsn, chain_saga, "first", [f"i{i}" for i in range(500)])

    def all_complete() -> bool:
        assert all(w.alive for w in workers), workers
        return bool(db.statuses() == {Status.COMPLETE: 500})

    wait_until(all_complete, timeout=60, interval=0.2)
    twice = db.rows("SELECT instance, step, count(*) FROM {s}.executed "
                    "GROUP BY instance, step HAVING count(*) <> 1")
    assert twice == []
    assert db.one("SELECT count(*) FROM {s}.executed") == 1500
    pids = {pid for (pid,) in db.rows("SELECT DISTINCT pid FROM {s}.executed")}
    assert pids <= {w.pid for w in workers}
    assert len(pids) >= 2  # the work really was shared

    for w in workers:
        w.send(signal.SIGTERM)
    assert [w.wait(10) for w in workers] == [0, 0, 0]
    assert db.runner_ids() == set()
    assert db.statuses() == {Status.COMPLETE: 500}
    for w in workers:
        assert "Traceback" not in w.stderr()


def test_a_killed_worker_s_instance_is_finished_by_another(
    chain_saga: Saga, db: Db, spawn: Callable[..., Worker], tmp_path: Path
) -> None:
    a = spawn(CHAIN, "--workers", "2", "--heartbeat-timeout", "2")
    chain_saga.start("x", "block_once", {"id": "x", "marker": str(tmp_path / "marker")})
    wait_until(lambda: db.events("x"), timeout=20)  # A's first attempt hangs
    running = chain_saga.get("x")
    assert running.status == Status.RUNNING
    assert f":{a.pid}:" in (running.runner_id or "")

    a.kill()  # SIGKILL: no goodbye, its runner row stays
    killed = time.monotonic()
    b = spawn(CHAIN, "--workers", "2", "--heartbeat-timeout", "2")

    wait_until(lambda: chain_saga.get("x").status == Status.COMPLETE, timeout=15, interval=0.1)
    assert time.monotonic() - killed < 15
    assert chain_saga.get("x").attempts == 2
    assert db.events("x") == [("block_once", "start", a.pid), ("block_once", "start", b.pid),
                              ("block_once", "done", b.pid)]
    assert len(db.runner_ids()) == 1  # A's row was reaped, B's is there


# -- stopping -----------------------------------------------------------------------------


@pytest.mark.parametrize("first", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_lets_the_step_in_flight_finish(
    chain_saga: Saga, db: Db, spawn: Callable[..., Worker], first: signal.Signals
) -> None:
    worker = spawn(CHAIN, "--workers", "2")
    chain_saga.start("s", "slow", {"id": "s", "seconds": 1.0})
    wait_until(lambda: db.events("s"), timeout=20)

    worker.send(first)

    assert worker.wait(15) == 0
    assert "Traceback" not in worker.stderr()
    assert db.events("s") == [("slow", "start", worker.pid), ("slow", "done", worker.pid)]
    assert chain_saga.get("s").status == Status.COMPLETE
    assert db.statuses() == {Status.COMPLETE: 1}
    assert db.runner_ids() == set()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_stops_at_once(
    chain_saga: Saga, db: Db, spawn: Callable[..., Worker], second: signal.Signals
) -> None:
    worker = spawn(CHAIN, "--workers", "2", "--grace", "30")
    chain_saga.start("s", "slow", {"id": "s", "seconds": 60})
    wait_until(lambda: db.events("s"), timeout=20)
    worker.send(signal.SIGTERM)
    wait_until(lambda: "SIGTERM: stopping gracefully" in worker.stderr(), timeout=10)

    sent = time.monotonic()
    worker.send(second)

    assert worker.wait(10) != 0
    assert time.monotonic() - sent < 5
    assert db.events("s") == [("slow", "start", worker.pid)]


def test_an_application_whose_run_was_stopped_at_once_stops_heartbeating(
    chain_saga: Saga, db: Db, spawn: Callable[..., Worker]
) -> None:
    app = spawn(command=(sys.executable, "-m", "tests.apps.inprocess"))
    chain_saga.start("s", "slow", {"id": "s", "seconds": 60})
    wait_until(lambda: db.events("s"), timeout=20)
    app.send(signal.SIGTERM)
    wait_until(lambda: "SIGTERM: stopping gracefully" in app.stderr(), timeout=10)
    app.send(signal.SIGINT)
    wait_until(lambda: "run returned" in app.out.read_text(), timeout=10)

    # The application lives on, but its runner is silent: the row is recovered.
    def recovered() -> bool:
        with psycopg.connect(chain_saga.dsn or "", autocommit=True) as conn:
            chain_saga.store.reap(conn)
        return chain_saga.get("s").status == Status.PENDING

    wait_until(recovered, timeout=10)
    assert app.alive


def test_after_the_grace_period_another_worker_takes_over_at_once(
    chain_saga: Saga, db: Db, spawn: Callable[..., Worker], tmp_path: Path
) -> None:
    a = spawn(CHAIN, "--workers", "2", "--grace", "1")
    chain_saga.start("x", "block_once", {"id": "x", "marker": str(tmp_path / "marker")})
    wait_until(lambda: db.events("x"), timeout=20)  # A's attempt hangs for a minute

    a.send(signal.SIGTERM)

    assert a.wait(10) == 0
    assert db.runner_ids() == set()  # its row is gone, so its straggler is an orphan at once
    b = spawn(CHAIN, "--workers", "2")  # the default heartbeat timeout: 15 s
    wait_until(lambda: chain_saga.get("x").status == Status.COMPLETE, timeout=10, interval=0.1)
    assert db.events("x") == [("block_once", "start", a.pid), ("block_once", "start", b.pid),
                              ("block_once", "done", b.pid)]


# -- NOTIFY -------------------------------------------------------------------------------


def test_notify_wakes_an_idle_worker(
    chain_saga: Saga, db: Db, spawn: Callable[..., Worker]
) -> None:
    spawn(CHAIN, "--workers", "2", "--poll-interval", "30")
    wait_until(db.listeners, timeout=20)

    for i in range(3):
        assert seconds_to_complete(chain_saga, f"n{i}", "first") < 3


def test_the_listener_reconnects_when_its_backend_dies(
    chain_saga: Saga, db: Db, spawn: Callable[..., Worker]
) -> None:
    worker = spawn(CHAIN, "--workers", "2", "--poll-interval", "30")
    [old] = wait_until(db.listeners, timeout=20)
    assert seconds_to_complete(chain_saga, "before", "first") < 3

    terminated = db.rows(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN%%' AND query LIKE %s",
        f"%{db.schema}%")
    assert terminated == [(True,)]
    wait_until(lambda: [pid for pid in db.listeners() if pid != old], timeout=10)

    assert seconds_to_complete(chain_saga, "after", "first") < 3
    assert worker.alive
