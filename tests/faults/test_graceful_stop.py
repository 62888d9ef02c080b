"""Fault 6: SIGTERM under load. Busy worker processes are told to stop: each lets its
in-flight steps finish, hands back what it had not started, deletes its runner row and
exits 0 within the grace period; nothing stays RUNNING. A fresh worker then finishes the
rest, and no step runs twice: a graceful stop costs no re-execution.
"""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import threading
import time
from collections import Counter

import psycopg
import pytest

from saga import Status
from tests.apps import fault_chain
from tests.faults.chain import APP, ChainLoad
from tests.faults.support import Figure, Figures, Ledger, Workers, spread, wait_for
from tests.helpers import poll

PROCESSES = 2
THREADS = 4
GRACE = 20.0
OPTIONS = ("--workers", str(THREADS), "--heartbeat-timeout", "5", "--poll-interval", "0.5",
           "--grace", str(GRACE), "--log-level", "INFO")
SLOW = 60  # single-step sagas of 0.3 to 1.5 s, claimed first (they are due first)
CHAIN = 200  # three-step sagas, `three` sleeping 0.1 s


def start_slow_sagas(ledger: Ledger) -> None:
    rng = random.Random(7)
    with fault_chain.build(ledger.schema, ledger.dsn) as saga, \
            psycopg.connect(ledger.dsn) as conn:
        for i in range(SLOW):
            saga.start(f"s{i}", "slow", fault_chain.Job(f"s{i}", pause=rng.uniform(0.3, 1.5)),
                       conn=conn)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigterm_under_load_finishes_in_flight_steps_and_exits_0(
    dsn: str, workers: Workers, ledger: Ledger, figures: Figures
) -> None:
    load = ChainLoad(ledger, CHAIN, pause=0.1)
    load.init_db()
    start_slow_sagas(ledger)
    load.start()
    stopping = [workers.start(APP, *OPTIONS) for _ in range(PROCESSES)]
    wait_for(lambda: ledger.count(Status.COMPLETE) >= 10 and ledger.count(Status.RUNNING) >= 6,
             120, "the workers busy with long steps")

    in_flight = ledger.count(Status.RUNNING)
    signalled = ledger.one("SELECT clock_timestamp()")
    began = time.monotonic()
    for w in stopping:
        w.terminate()
    exited: dict[int, float] = {}  # pid: seconds from SIGTERM to exit

    def all_exited() -> bool:
        for w in stopping:
            if w.pid not in exited and not w.alive:
                exited[w.pid] = time.monotonic() - began
        return len(exited) == len(stopping)

    poll(all_exited, GRACE + 30, interval=0.05)
    exits = [w.wait(5) for w in stopping]
    stop_times = list(exited.values())
    running_after = ledger.count(Status.RUNNING)
    runners_after = ledger.one("SELECT count(*) FROM {s}.runner")
    unfinished = ledger.rows(
        "SELECT s.instance, s.pid FROM {s}.executed AS s WHERE s.event = 'start' "
        "AND NOT EXISTS (SELECT 1 FROM {s}.executed AS d WHERE d.event = 'done' "
        "AND d.instance = s.instance AND d.pid = s.pid)")
    done_by_then = ledger.count(Status.COMPLETE)
    # Long steps the stopped workers had begun before the SIGTERM and finished after it.
    finished_in_grace = ledger.one(
        "SELECT count(*) FROM {s}.executed AS s JOIN {s}.executed AS d"
        "  ON d.instance = s.instance AND d.pid = s.pid AND d.event = 'done'"
        " WHERE s.event = 'start' AND s.at < %s AND d.at > %s AND s.pid = ANY(%s)",
        signalled, signalled, [w.pid for w in stopping])

    finisher = workers.start(APP, *OPTIONS[2:], "--workers", str(2 * THREADS))
    wait_for(lambda: ledger.count(Status.COMPLETE) == SLOW + CHAIN, 120,
             "a fresh worker finishes the rest")
    finisher.terminate()
    finisher_exit = finisher.wait(GRACE + 30)
    starts = dict(ledger.rows("SELECT instance, count(*) FROM {s}.executed "
                              "WHERE event = 'start' GROUP BY 1"))
    outcome = load.outcome()
    figures.record(Figure(
        fault="Graceful stop under load",
        load=f"{SLOW} one-step sagas of 0.3-1.5 s and {CHAIN} three-step sagas, "
             f"{PROCESSES} worker processes x {THREADS} threads, --grace {GRACE:g}",
        injected=f"SIGTERM to every worker with {in_flight} rows RUNNING and "
                 f"{done_by_then}/{SLOW + CHAIN} sagas complete",
        lost=SLOW + CHAIN - ledger.count(Status.COMPLETE),
        running=running_after,
        reexecuted=sum(outcome.reexecuted.values()) + sum(n - 1 for n in starts.values()),
        recovery=f"SIGTERM to exit: {spread(stop_times)}",
        details={
            "steps begun and not finished by the stopped workers": len(unfinished),
            "long steps begun before the SIGTERM and finished after it": finished_in_grace,
            "runner rows left by the stopped workers": runners_after,
            "exit codes": exits,
        },
    ), dsn)

    assert in_flight > 0
    assert finished_in_grace > 0, "the SIGTERM found no step in flight"
    assert exits == [0] * PROCESSES
    assert max(stop_times) < GRACE + 10  # within the grace period (plus process exit)
    assert unfinished == []
    assert running_after == 0
    assert runners_after == 0
    assert finisher_exit == 0
    load.check(outcome)
    assert outcome.reexecuted.total() == 0
    assert starts == {f"s{i}": 1 for i in range(SLOW)}
    assert "Traceback" not in workers.stderr()


STRESS_ROUNDS = 6
STRESS_PROCESSES = 6
STRESS_GRACE = 10.0


def busy_processes(ledger: Ledger, pids: list[int]) -> int:
    """How many of the worker processes *pids* hold a RUNNING row."""
    return int(ledger.one(
        "SELECT count(DISTINCT r.pid) FROM {s}.instance AS i JOIN {s}.runner AS r"
        "  ON r.id = i.runner_id WHERE i.status = 1 AND r.pid = ANY(%s)", pids))


def start_busy_sagas(ledger: Ledger, count: int) -> None:
    with fault_chain.build(ledger.schema, ledger.dsn) as saga:
        saga.start_many("busy", [(f"b{i}", fault_chain.Job(f"b{i}", pause=0.4))
                                 for i in range(count)])


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigterm_never_hangs_a_busy_worker(
    dsn: str, workers: Workers, ledger: Ledger, figures: Figures
) -> None:
    """Many worker processes whose threads hold the CPU (and contend for the GIL), each
    sent one SIGTERM at a random moment: every one exits 0 within its grace period. A
    signal handler that takes a lock the interrupted main thread may hold would hang a
    few of them for ever; a hung worker's threads are dumped (faulthandler) into the
    failure."""
    ChainLoad(ledger, 0).init_db()
    start_busy_sagas(ledger, STRESS_ROUNDS * STRESS_PROCESSES * 4 * 4)
    rng = random.Random(11)
    options = ("--workers", "4", "--heartbeat-timeout", "5", "--poll-interval", "0.5",
               "--grace", str(STRESS_GRACE), "--log-level", "WARNING")
    hung: list[str] = []
    exits: list[int | None] = []
    stop_times: list[float] = []
    held: list[int] = []  # rows RUNNING in each batch's processes just before the SIGTERMs
    for _ in range(STRESS_ROUNDS):
        batch = [workers.start(APP, *options) for _ in range(STRESS_PROCESSES)]
        workers.wait_registered(ledger, batch)
        pids = [w.pid for w in batch]
        wait_for(lambda p=pids: busy_processes(ledger, p) == len(p), 60,  # type: ignore[misc]
                 "every process of the batch running a busy step")
        threading.Event().wait(rng.uniform(0.0, 0.4))  # a random moment within a step
        held.append(busy_processes(ledger, pids))
        began = time.monotonic()
        for w in batch:
            w.terminate()
        for w in batch:
            try:
                exits.append(w.proc.wait(STRESS_GRACE + 15))
                stop_times.append(time.monotonic() - began)
            except subprocess.TimeoutExpired:
                exits.append(None)
                w.proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack
                with contextlib.suppress(subprocess.TimeoutExpired):
                    w.proc.wait(5)
                hung.append(f"pid {w.pid}:\n{w.stderr()[-4000:]}")
    figures.record(Figure(
        fault="SIGTERM to busy workers, many times",
        load=f"{STRESS_ROUNDS} rounds of {STRESS_PROCESSES} worker processes x 4 threads, "
             "each thread holding the CPU in 0.4 s steps",
        injected=f"{len(exits)} x SIGTERM, one per process, at a random moment",
        lost=None,
        running=ledger.count(Status.RUNNING),
        recovery=f"SIGTERM to exit: {spread(stop_times)}",
        details={"workers that never exited": len(hung),
                 "processes running a step at the SIGTERM, by round": held,
                 "exit codes": dict(sorted(Counter(str(e) for e in exits).items()))},
    ), dsn)

    assert hung == [], "\n\n".join(hung)
    assert min(held) > 0, held  # each round's SIGTERMs landed on running steps
    assert exits == [0] * len(exits)
    assert ledger.count(Status.RUNNING) == 0
