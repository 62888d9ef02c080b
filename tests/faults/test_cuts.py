"""Fault 3: connections cut. Twice in a run, every backend of the worker processes (their
pools, heartbeats, listeners and the steps' own connections) is terminated with
`pg_terminate_backend`. The workers reconnect by themselves; nothing is lost, `conn`
effects stay exactly once. Measured: the time from each cut to the next completed step.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from psycopg.conninfo import make_conninfo

from saga import Status
from tests.faults.chain import APP, ChainLoad
from tests.faults.support import Figure, Figures, Ledger, Workers, seconds, spread, wait_for

SAGAS = 1500
PROCESSES = 3
THREADS = 4
HEARTBEAT_TIMEOUT = 5.0
OPTIONS = ("--workers", str(THREADS), "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT),
           "--poll-interval", "0.5", "--grace", "10", "--log-level", "WARNING")
PAUSE = 0.02  # seconds `three` sleeps, so that the run lasts past both cuts


def cut(ledger: Ledger, application: str) -> tuple[datetime, int, int]:
    """Terminate every backend of *application*; return when, how many, and how many rows
    were RUNNING then (in the same snapshot)."""
    at, killed, running = ledger.rows(
        "SELECT clock_timestamp(), count(*) FILTER (WHERE pg_terminate_backend(pid)), "
        "(SELECT count(*) FROM {s}.instance WHERE status = 1) "
        "FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = %s", application)[0]
    return at, int(killed), int(running)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_workers_carry_on_when_every_connection_is_cut_twice(
    dsn: str, schema: str, workers: Workers, ledger: Ledger, figures: Figures
) -> None:
    application = f"cut_{schema}"  # what tells the workers' backends from the test's own
    load = ChainLoad(ledger, SAGAS, pause=PAUSE)
    load.start()
    started = [workers.start(APP, *OPTIONS, dsn=make_conninfo(dsn, application_name=application))
               for _ in range(PROCESSES)]
    cuts = []
    for share in (3, 2):  # at a third, then at half of the sagas complete
        wait_for(lambda s=share: load.complete() >= SAGAS // s  # type: ignore[misc]
                 and ledger.count(Status.RUNNING) > 0, 120,
                 f"1/{share} of the sagas complete, and steps running")
        cuts.append((*cut(ledger, application), load.complete()))
    wait_for(lambda: load.complete() == SAGAS, 120, "every saga complete after the cuts")
    recovery = [seconds(ledger.one("SELECT min(updated_at) FROM {s}.instance "
                                   "WHERE status = 2 AND updated_at > %s", at), at)
                for at, _, _, _ in cuts]

    alive, exits = workers.stop(started)
    outcome = load.outcome()
    stderr = workers.stderr()
    figures.record(Figure(
        fault="Connections cut",
        load=f"{load.describe()}, {PROCESSES} worker processes x {THREADS} threads, "
             f"heartbeat timeout {HEARTBEAT_TIMEOUT:g} s",
        injected="2 cuts (`pg_terminate_backend` on every worker backend): "
                 + ", ".join(f"{n} backends at {done}/{SAGAS} complete, {held} rows RUNNING"
                             for _, n, held, done in cuts),
        lost=SAGAS - outcome.statuses.get(Status.COMPLETE, 0),
        running=outcome.statuses.get(Status.RUNNING, 0),
        reexecuted=sum(outcome.reexecuted.values()),
        recovery=f"cut to next completed step: {spread(recovery)}",
        details={
            "re-executed steps, by step": outcome.by_step(),
            "outcomes written on a fresh connection after theirs broke (log lines)":
                stderr.count("connection lost while recording"),
            "worker processes restarted": 0 if all(alive) else "some died",
        },
    ), dsn)

    assert all(n >= PROCESSES * (THREADS + 2) for _, n, _, _ in cuts), cuts  # pools, beats, LISTEN
    assert all(held > 0 for _, _, held, _ in cuts), cuts  # ... while they ran steps
    assert all(alive), "a worker died of the cuts"
    assert exits == [0] * PROCESSES
    load.check(outcome)
    assert "Traceback" not in stderr
