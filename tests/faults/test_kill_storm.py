"""Fault 1: a kill storm. Worker processes are killed with SIGKILL every ~2 s while they
work through 2,000 sagas, and fresh ones take their place. Every saga completes, no row
stays RUNNING, every step runs at least once and a `conn` step's effect exactly once;
the re-executions are the at-least-once cost, counted and reported.
"""

from __future__ import annotations

import random
import time
from datetime import datetime

import pytest

from saga import Status
from tests.faults.chain import APP, ChainLoad
from tests.faults.support import Figure, Figures, Ledger, Workers, seconds, spread
from tests.helpers import poll

SAGAS = 2000
PROCESSES = 3
THREADS = 4
KILL_EVERY = 2.0  # seconds between kills, on average
HEARTBEAT_TIMEOUT = 2.0
OPTIONS = ("--workers", str(THREADS), "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT),
           "--poll-interval", "0.5", "--grace", "10", "--log-level", "WARNING")
PAUSE = 0.1  # seconds `three` sleeps: the storm lasts for many kills, most land mid-step
DEADLINE = 400.0  # seconds for the whole storm; it takes far less


class Storm:
    """Kill a random worker every ~KILL_EVERY s and start a fresh one, until every saga
    is complete; note when each killed runner is reaped."""

    def __init__(self, load: ChainLoad, workers: Workers, ledger: Ledger) -> None:
        self.load, self.workers, self.ledger = load, workers, ledger
        self.killed: dict[int, datetime] = {}  # pid: database time of the kill
        self.held: dict[int, int] = {}  # pid: rows it held RUNNING when killed
        self.unregistered: set[int] = set()  # killed while starting, before its runner row
        self.reaped: dict[int, datetime] = {}  # pid: when its runner row was seen gone

    def run(self) -> None:
        rng = random.Random(20240501)  # the victims and intervals are repeatable
        deadline = time.monotonic() + DEADLINE
        while not poll(self._done, KILL_EVERY * rng.uniform(0.75, 1.25), interval=0.1):
            assert time.monotonic() < deadline, (
                f"not complete after {DEADLINE}s: {self.ledger.statuses()}")
            victim = rng.choice(self.workers.alive())
            victim.kill()
            self.killed[victim.pid] = self.ledger.one("SELECT clock_timestamp()")
            if not self.ledger.one("SELECT count(*) FROM {s}.runner WHERE pid = %s", victim.pid):
                self.unregistered.add(victim.pid)
            self.held[victim.pid] = self.ledger.one(
                "SELECT count(*) FROM {s}.instance WHERE status = 1 AND runner_id LIKE %s",
                f"%:{victim.pid}:%")
            self.workers.start(APP, *OPTIONS)
        # The last victims' rows are reaped too (they held nothing still undone).
        poll(lambda: self._done() and len(self.reaped) + len(self.unregistered)
             == len(self.killed), 3 * HEARTBEAT_TIMEOUT)

    def _done(self) -> bool:
        """True once every saga is complete; on the way, note the runners reaped."""
        now, live = self.ledger.rows("SELECT clock_timestamp(), array_agg(pid) "
                                     "FROM {s}.runner")[0]
        for pid in self.killed.keys() - self.reaped.keys() - self.unregistered - set(live or ()):
            self.reaped[pid] = now
        return self.load.complete() == self.load.sagas


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE + 120)
def test_a_kill_storm_loses_nothing(
    dsn: str, workers: Workers, ledger: Ledger, figures: Figures
) -> None:
    load = ChainLoad(ledger, SAGAS, pause=PAUSE)
    load.start()
    began = time.monotonic()
    for _ in range(PROCESSES):
        workers.start(APP, *OPTIONS)

    storm = Storm(load, workers, ledger)
    storm.run()
    elapsed = time.monotonic() - began

    survivors = workers.alive()
    workers.wait_registered(ledger, survivors)
    for w in survivors:
        w.terminate()
    exits = [w.wait(30) for w in survivors]

    outcome = load.outcome()
    rerun = [seconds(second, storm.killed[pid]) for _, _, _, second, pid, _ in ledger.reruns()
             if pid in storm.killed]
    reaped = [seconds(storm.reaped[pid], at) for pid, at in storm.killed.items()
              if pid in storm.reaped]
    figures.record(Figure(
        fault="Worker kill storm",
        load=f"{load.describe()}, {PROCESSES} worker processes x {THREADS} threads, "
             f"heartbeat timeout {HEARTBEAT_TIMEOUT:g} s",
        injected=f"{len(storm.killed)} x kill -9 (every ~{KILL_EVERY:g} s), each replaced "
                 "by a fresh process",
        lost=SAGAS - outcome.statuses.get(Status.COMPLETE, 0),
        running=outcome.statuses.get(Status.RUNNING, 0),
        reexecuted=sum(outcome.reexecuted.values()),
        recovery=f"kill to runner reaped, its rows back to PENDING: {spread(reaped)}",
        details={
            "rows held RUNNING by the killed workers": sum(storm.held.values()),
            "workers killed while starting (no runner row yet)": len(storm.unregistered),
            "re-executed steps, by step": outcome.by_step(),
            "kill to re-run of a step the victim had begun": spread(rerun),
            "conn-step effects committed twice": sum(1 for n in outcome.effects.values()
                                                     if n > 1),
            "duration": f"{elapsed:.1f} s ({SAGAS * 3 / elapsed:.0f} steps/s through "
                        "the storm)",
            "worker processes started": len(workers.started),
        },
    ), dsn)

    assert len(storm.killed) >= 3, "the storm was too short to mean anything"
    # The kills landed on work in flight: victims held rows, and steps they had begun
    # ran again elsewhere.
    hit = [pid for pid, n in storm.held.items() if n > 0]
    assert len(hit) >= 3, f"too few kills hit a worker holding rows: {storm.held}"
    assert rerun, "no step a victim had begun was run again: the kills hit no step"
    assert exits == [0] * len(survivors)
    load.check(outcome)
    assert ledger.one("SELECT max(attempts) FROM {s}.instance") < 100
    left = {pid for (pid,) in ledger.rows("SELECT pid FROM {s}.runner")}
    assert not left & {w.pid for w in survivors}  # a graceful stop deletes its runner row
