"""Worker processes through a real PgBouncer in transaction pooling (3 server
connections for every client): claims, heartbeats, reaping a `kill -9`-ed worker, a
graceful stop; and (slow) the fault run: 3 processes x 4 threads over 1,000 sagas while
PgBouncer is restarted once and workers are killed.

The tests' own SQL (the ledger) goes to the server directly.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime

import pytest

from saga import Status
from saga.pgbouncer import PgBouncer
from tests.apps import fault_chain
from tests.faults.chain import APP, ChainLoad
from tests.faults.support import Figure, Figures, Ledger, Workers, seconds, spread, wait_for

pytestmark = pytest.mark.pooler

THREADS = 4
HEARTBEAT_TIMEOUT = 2.0
OPTIONS = ("--pooler", "--workers", str(THREADS), "--heartbeat-timeout",
           str(HEARTBEAT_TIMEOUT), "--grace", "10", "--log-level", "INFO")


@pytest.fixture(autouse=True)
def log_directly(monkeypatch: pytest.MonkeyPatch, dsn: str) -> None:
    """The workers' step log goes to the server directly (see tests/apps/fault_chain.py)."""
    monkeypatch.setenv("SAGA_TEST_LOG_DSN", dsn)


def heartbeats(ledger: Ledger) -> dict[int, datetime]:
    return dict(ledger.rows("SELECT pid, heartbeat_at FROM {s}.runner"))


def no_session_trouble(stderr: str) -> None:
    """What breaks behind a transaction pooler, absent from the workers' logs."""
    for sign in ("prepared statement", "listen_deaf", "LISTEN does not deliver", "ERROR"):
        assert sign not in stderr, stderr[-4000:]


@pytest.mark.timeout(120)
def test_worker_processes_through_pgbouncer(
        bouncer: PgBouncer, make_workers: Callable[[str, str], Workers], ledger: Ledger,
        schema: str) -> None:
    load = ChainLoad(ledger, 300)
    load.start()
    workers = make_workers(bouncer.dsn, schema)
    a, b = workers.start(APP, *OPTIONS), workers.start(APP, *OPTIONS)
    workers.wait_registered(ledger, [a, b])
    wait_for(lambda: load.complete() == load.sagas, 60, "the chain sagas complete")
    load.check(load.outcome())
    assert ledger.listeners() == []  # pooler mode: the workers poll

    first = heartbeats(ledger)
    wait_for(lambda: all(heartbeats(ledger).get(pid, first[pid]) > first[pid]
                         for pid in first), 10, "both runners heartbeat")

    # Eight slow steps, one per worker thread: each process holds four of them.
    with fault_chain.build(schema, ledger.dsn) as s:
        for i in range(8):
            s.start(f"slow-{i}", "slow", fault_chain.Job(f"slow-{i}", pause=3.0))
    held = "SELECT count(*) FROM {s}.instance WHERE status = 1 AND runner_id LIKE %s"
    wait_for(lambda: ledger.one(held, f"%:{a.pid}:%") > 0, 10, "worker a holds a slow step")
    a.kill()
    # b reaps a once its heartbeat lapses, and runs its steps again.
    wait_for(lambda: a.pid not in heartbeats(ledger), 4 * HEARTBEAT_TIMEOUT + 5, "a reaped")
    wait_for(lambda: ledger.one("SELECT count(*) FROM {s}.instance WHERE status = 2 "
                                "AND instance_id LIKE 'slow-%%'") == 8, 30,
             "the slow steps complete")
    reruns = ledger.one("SELECT count(*) FROM {s}.executed WHERE step = 'slow' AND "
                        "event = 'start' AND pid = %s", b.pid)
    assert reruns >= 4 + 1  # its own four, and at least one of a's again

    b.terminate()
    assert b.wait(30) == 0
    assert ledger.one("SELECT count(*) FROM {s}.runner") == 0  # b deleted its row
    assert ledger.count(Status.RUNNING) == 0
    assert re.search(rf"runner\(s\) [^ ]*:{a.pid}:[^ ]* fell silent", b.stderr())  # b reaped a
    no_session_trouble(b.stderr())
    assert bouncer.server_connections() <= bouncer.pool_size


SAGAS = 1000
PROCESSES = 3


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_fault_run_through_pgbouncer(
        bouncer: PgBouncer, make_workers: Callable[[str, str], Workers], ledger: Ledger,
        schema: str, figures: Figures, dsn: str) -> None:
    """PgBouncer restarted once (every client connection breaks) and two workers
    killed mid-run: nothing lost, nothing RUNNING, `conn` effects exactly once."""
    load = ChainLoad(ledger, SAGAS, pause=0.02)
    load.start()
    workers = make_workers(bouncer.dsn, schema)
    started = [workers.start(APP, *OPTIONS) for _ in range(PROCESSES)]
    workers.wait_registered(ledger, started)
    began = time.monotonic()

    wait_for(lambda: load.complete() >= SAGAS // 5, 120, "a fifth complete")
    bounced_at = time.monotonic()
    bouncer.restart()
    restart_took = time.monotonic() - bounced_at
    progress = load.complete()
    wait_for(lambda: load.complete() > progress + 20, 60, "progress after the restart")
    back_after = time.monotonic() - bounced_at

    killed = []
    for victim in started[:2]:
        target = progress + SAGAS // 5
        wait_for(lambda: load.complete() > target, 120, "more progress")  # noqa: B023
        progress = load.complete()
        victim.kill()
        killed.append(victim.pid)
        workers.start(APP, *OPTIONS)
    wait_for(lambda: load.complete() == SAGAS, 240, "every saga completes")
    elapsed = time.monotonic() - began

    survivors = workers.alive()
    workers.wait_registered(ledger, survivors)
    alive, exits = Workers.stop(survivors)
    outcome = load.outcome()
    figures.record(Figure(
        fault="PgBouncer restart and worker kills (transaction pooling)",
        load=f"{load.describe()}, {PROCESSES} worker processes x {THREADS} threads with "
             f"--pooler through PgBouncer (default_pool_size {bouncer.pool_size}), "
             f"heartbeat timeout {HEARTBEAT_TIMEOUT:g} s",
        injected="PgBouncer killed and restarted once; 2 x kill -9 of a worker, each "
                 "replaced by a fresh process",
        lost=SAGAS - outcome.statuses.get(Status.COMPLETE, 0),
        running=outcome.statuses.get(Status.RUNNING, 0),
        reexecuted=sum(outcome.reexecuted.values()),
        recovery=f"PgBouncer back to 20 more sagas complete: {back_after:.1f} s "
                 f"(restart itself {restart_took:.1f} s)",
        details={
            "re-executed steps, by step": outcome.by_step(),
            "duration": f"{elapsed:.1f} s ({SAGAS * 3 / elapsed:.0f} steps/s)",
            "worker processes started": len(workers.started),
            "rerun spread": spread([seconds(r[3], r[2]) for r in ledger.reruns()]),
        },
    ), dsn)
    assert alive == [True] * len(survivors)
    assert exits == [0] * len(survivors)
    load.check(outcome)
    assert ledger.count(Status.RUNNING) == 0
    assert "prepared statement" not in workers.stderr()
