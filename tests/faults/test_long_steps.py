"""Fault 5: steps that outlast the heartbeat timeout. A step that runs for 3x the timeout
(asleep, or holding the CPU in Python) is not taken from its runner while its process
lives, though another runner is reaping and short sagas keep both processes busy.
Measured: the longest silence of any runner's heartbeat.
"""

from __future__ import annotations

import psycopg
import pytest

from saga import Status
from tests.apps import fault_chain
from tests.faults.chain import APP, ChainLoad
from tests.faults.support import Figure, Figures, Ledger, Workers, wait_for

HEARTBEAT_TIMEOUT = 2.0
LONG = 3 * HEARTBEAT_TIMEOUT  # seconds each long step takes
PROCESSES = 2
THREADS = 4
SHORT_SAGAS = 400
OPTIONS = ("--workers", str(THREADS), "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT),
           "--poll-interval", "0.5", "--grace", "20", "--log-level", "INFO")
LONG_STEPS = {"sleeper-0": "slow", "sleeper-1": "slow", "spinner-0": "busy",
              "spinner-1": "busy"}


class HeartbeatWatch:
    """Sample the runner table; keep each runner's longest gap between beats seen."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.last: dict[str, object] = {}
        self.longest = 0.0
        self.owners: dict[str, set[str | None]] = {i: set() for i in LONG_STEPS}

    def sample(self) -> bool:
        for runner, beat, gap in self.ledger.rows(
                "SELECT id, heartbeat_at, extract(epoch FROM clock_timestamp() - heartbeat_at)"
                " FROM {s}.runner"):
            self.longest = max(self.longest, float(gap))
            self.last[runner] = beat
        for instance, runner in self.ledger.rows(
                "SELECT instance_id, runner_id FROM {s}.instance WHERE instance_id = ANY(%s)",
                list(LONG_STEPS)):
            self.owners[instance].add(runner)
        done: int = self.ledger.one("SELECT count(*) FROM {s}.instance WHERE status = 2 "
                                    "AND instance_id = ANY(%s)", list(LONG_STEPS))
        return done == len(LONG_STEPS)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_step_three_times_the_heartbeat_timeout_is_not_stolen(
    dsn: str, schema: str, workers: Workers, ledger: Ledger, figures: Figures
) -> None:
    load = ChainLoad(ledger, SHORT_SAGAS, pause=0.05)
    load.start()
    with fault_chain.build(schema, dsn) as saga, psycopg.connect(dsn) as conn:
        for instance, step in LONG_STEPS.items():
            saga.start(instance, step, fault_chain.Job(instance, pause=LONG), conn=conn)
    started = [workers.start(APP, *OPTIONS) for _ in range(PROCESSES)]
    watch = HeartbeatWatch(ledger)
    wait_for(watch.sample, 120, "the long steps complete")
    wait_for(lambda: load.complete() == SHORT_SAGAS, 120, "the short sagas complete")
    for w in started:
        w.terminate()
    exits = [w.wait(30) for w in started]

    events = {i: [(e, pid) for e, pid in ledger.rows(
        "SELECT event, pid FROM {s}.executed WHERE instance = %s ORDER BY at", i)]
        for i in LONG_STEPS}
    attempts = dict(ledger.rows("SELECT instance_id, attempts FROM {s}.instance "
                                "WHERE instance_id = ANY(%s)", list(LONG_STEPS)))
    stolen = [i for i, e in events.items() if len(e) != 2 or e[0][1] != e[1][1]]
    stderr = workers.stderr()
    figures.record(Figure(
        fault="Long steps",
        load=f"{len(LONG_STEPS)} steps of {LONG:g} s (2 asleep, 2 holding the CPU) = 3x the "
             f"heartbeat timeout of {HEARTBEAT_TIMEOUT:g} s, beside {SHORT_SAGAS} short "
             f"sagas, {PROCESSES} worker processes x {THREADS} threads",
        injected="none: the steps' length is the fault",
        lost=len(LONG_STEPS) + SHORT_SAGAS - ledger.count(Status.COMPLETE),
        running=ledger.count(Status.RUNNING),
        reexecuted=sum(len(e) // 2 - 1 for e in events.values()),
        recovery="n/a",
        details={
            "long steps taken over by another runner": len(stolen),
            "longest heartbeat silence seen (sampled)": f"{watch.longest:.2f} s",
            "runners reaped": stderr.count("reaped "),
        },
    ), dsn)

    assert exits == [0] * PROCESSES
    assert stolen == []
    assert attempts == dict.fromkeys(LONG_STEPS, 1)
    for instance, owners in watch.owners.items():
        assert len(owners - {None}) == 1, (instance, owners)  # one runner from claim to end
    assert "lost instance" not in stderr
    assert "reaped " not in stderr
    load.check(load.outcome())
