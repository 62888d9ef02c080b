"""Fault 2: the database server restarts in the middle of a run (fast and immediate
mode), or refuses every connection for longer than the heartbeat timeout. The worker
processes are not restarted: they reconnect by themselves, nothing is lost, `conn`
effects stay exactly once. Measured: the outage, and the time from the server being
back to the first completed step.

The server is an embedded cluster of the test's own, so that the other tests' database
is not disturbed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from saga import Status
from saga.testing import restart_embedded
from tests.faults.chain import APP, ChainLoad
from tests.faults.support import Figure, Figures, Ledger, Workers, seconds, wait_for

SAGAS = 1000
PROCESSES = 2
THREADS = 4
HEARTBEAT_TIMEOUT = 5.0
OPTIONS = ("--workers", str(THREADS), "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT),
           "--poll-interval", "0.5", "--grace", "10", "--log-level", "WARNING")
PAUSE = 0.02  # seconds `three` sleeps, so that the run lasts well past the restart


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_workers_carry_on_through_a_database_restart(
    own_cluster: str, make_workers: Callable[[str, str], Workers],
    make_ledger: Callable[[str, str], Ledger], figures: Figures, mode: str
) -> None:
    ledger = make_ledger(own_cluster, "restart")
    load = ChainLoad(ledger, SAGAS, pause=PAUSE)
    load.start()
    workers = make_workers(own_cluster, "restart")
    started = [workers.start(APP, *OPTIONS) for _ in range(PROCESSES)]
    wait_for(lambda: load.complete() >= SAGAS // 4 and ledger.count(Status.RUNNING) > 0, 120,
             "a quarter of the sagas complete, and steps running")

    # What the restart will cut: the workers' backends, and the rows they are running.
    before, backends, in_flight = ledger.rows(
        "SELECT clock_timestamp(), (SELECT count(*) FROM pg_stat_activity"
        "  WHERE datname = current_database() AND backend_type = 'client backend'"
        "    AND pid <> pg_backend_pid()),"
        " (SELECT count(*) FROM {s}.instance WHERE status = 1)")[0]
    done_before = load.complete()
    began = time.monotonic()
    restart_embedded(own_cluster, mode)  # type: ignore[arg-type]
    restart_took = time.monotonic() - began
    back = ledger.one("SELECT pg_postmaster_start_time()")
    wait_for(lambda: load.complete() == SAGAS, 120, "every saga complete after the restart")
    first_after, last = ledger.rows(
        "SELECT min(updated_at) FILTER (WHERE updated_at >= %s), max(updated_at) "
        "FROM {s}.instance WHERE status = 2", back)[0]

    alive, exits = workers.stop(started)
    outcome = load.outcome()
    stderr = workers.stderr()
    figures.record(Figure(
        fault=f"Database restart ({mode} mode)",
        load=f"{load.describe()}, {PROCESSES} worker processes x {THREADS} threads, "
             f"heartbeat timeout {HEARTBEAT_TIMEOUT:g} s",
        injected=f"1 server restart (`pg_ctl restart -m {mode}`) with "
                 f"{done_before}/{SAGAS} sagas complete, {in_flight} rows RUNNING and "
                 f"{backends} worker backends cut",
        lost=SAGAS - outcome.statuses.get(Status.COMPLETE, 0),
        running=outcome.statuses.get(Status.RUNNING, 0),
        reexecuted=sum(outcome.reexecuted.values()),
        recovery=f"server back to first completed step: {seconds(first_after, back):.2f} s",
        details={
            "server down (last statement before the restart to the new postmaster's "
            "start)": f"{seconds(back, before):.2f} s",
            "`pg_ctl restart` took": f"{restart_took:.2f} s",
            "server back to every saga complete": f"{seconds(last, back):.2f} s",
            "re-executed steps, by step": outcome.by_step(),
            "worker processes restarted": 0 if all(alive) else "some died",
            "outcomes written on a fresh connection after theirs broke (log lines)":
                stderr.count("connection lost while recording"),
        },
    ), own_cluster)

    # The restart cut every worker's connections (a thread each, and the heartbeat's)
    # while they ran steps.
    assert backends >= PROCESSES * (THREADS + 1), backends
    assert in_flight > 0
    assert all(alive), "a worker died of the restart"
    assert exits == [0] * PROCESSES
    load.check(outcome)
    assert "Traceback" not in stderr


OUTAGE_HEARTBEAT = 2.0
OUTAGE = 3 * OUTAGE_HEARTBEAT  # seconds the database refuses every connection


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_workers_carry_on_through_an_outage_longer_than_the_heartbeat_timeout(
    own_cluster: str, make_workers: Callable[[str, str], Workers],
    make_ledger: Callable[[str, str], Ledger], figures: Figures
) -> None:
    """The database refuses every connection for 3x the heartbeat timeout (its backends
    terminated, new ones refused): every runner is past its expiry when it comes back.
    The first runner back must not take the others' work while they reconnect; steps
    whose outcome could not be written run again; nothing is lost."""
    with psycopg.connect(own_cluster, autocommit=True) as admin:
        admin.execute("CREATE DATABASE outage")  # connections to it can be refused
    dsn = make_conninfo(own_cluster, dbname="outage")
    ledger = make_ledger(dsn, "outage")
    load = ChainLoad(ledger, SAGAS // 2, pause=0.1)
    load.start()
    workers = make_workers(dsn, "outage")
    options = ("--workers", str(THREADS), "--heartbeat-timeout", str(OUTAGE_HEARTBEAT),
               "--poll-interval", "0.5", "--grace", "10", "--log-level", "WARNING")
    started = [workers.start(APP, *options) for _ in range(PROCESSES)]
    wait_for(lambda: load.complete() >= load.sagas // 4 and ledger.count(Status.RUNNING) > 0,
             120, "a quarter of the sagas complete, and steps running")

    in_flight = ledger.count(Status.RUNNING)
    with psycopg.connect(own_cluster, autocommit=True) as admin:
        done_before = load.complete()
        admin.execute("ALTER DATABASE outage ALLOW_CONNECTIONS false")
        down, cut = admin.execute(
            "SELECT clock_timestamp(), count(*) FILTER (WHERE pg_terminate_backend(pid)) "
            "FROM pg_stat_activity WHERE datname = 'outage'").fetchone() or (None, 0)
        threading.Event().wait(OUTAGE)
        admin.execute("ALTER DATABASE outage ALLOW_CONNECTIONS true")
        back = admin.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    wait_for(lambda: load.complete() == load.sagas, 120, "every saga complete after the outage")
    first_after = ledger.one("SELECT min(updated_at) FROM {s}.instance "
                             "WHERE status = 2 AND updated_at >= %s", back)

    alive, exits = workers.stop(started)
    outcome = load.outcome()
    stderr = workers.stderr()
    figures.record(Figure(
        fault=f"Database unreachable for {OUTAGE:g} s (3x the heartbeat timeout)",
        load=f"{load.describe()}, {PROCESSES} worker processes x {THREADS} threads, "
             f"heartbeat timeout {OUTAGE_HEARTBEAT:g} s",
        injected=f"every connection refused for {seconds(back, down):.1f} s ({cut} backends "
                 f"terminated) with {done_before}/{load.sagas} sagas complete and "
                 f"{in_flight} rows RUNNING",
        lost=load.sagas - outcome.statuses.get(Status.COMPLETE, 0),
        running=outcome.statuses.get(Status.RUNNING, 0),
        reexecuted=sum(outcome.reexecuted.values()),
        recovery=f"database back to first completed step: {seconds(first_after, back):.2f} s",
        details={
            "re-executed steps, by step": outcome.by_step(),
            "runners reaped by another after the outage (log lines)": stderr.count("reaped "),
            "runners that found themselves reaped and registered again (log lines)":
                stderr.count("registering again"),
            "worker processes restarted": 0 if all(alive) else "some died",
        },
    ), dsn)

    assert cut >= PROCESSES * (THREADS + 1), cut  # the workers' connections were cut ...
    assert in_flight > 0  # ... while they ran steps
    assert all(alive), "a worker died of the outage"
    assert exits == [0] * PROCESSES
    load.check(outcome)
    assert "Traceback" not in stderr
