"""Fault 4: races between callers and workers (tests/apps/fault_events.py).

`call()`: 1,000 calls from 8 threads land on sagas that worker processes are busy
advancing. Each call either raised `ConcurrencyException` and did nothing, or was
applied: its step ran with its input, exactly once. Never lost, never both. A call that
*superseded* an earlier one (replaced it before any worker claimed the instance) would
lose the earlier one: there must be none. To tell, every call runs in the caller's
transaction (`conn=`), which also writes an audit row; the row lock that `call()` takes
orders the audit rows of one instance as their commits are ordered, and the `event` step
logs the input it ran with in the transaction of its outcome. Merged by time, per
instance, every event must have run the latest call before it, and every call must be
followed by its event.

`cancel()`: 400 sagas of six steps, each cancelled once from one of 8 threads at a
random moment. A cancel either raised `ConcurrencyException` (the saga had finished) or
was accepted: a PENDING saga is CANCELLED at once and runs nothing more; a RUNNING one
ends CANCELLED at its step boundary, or COMPLETE if that step was its last. No step
begins after an accepted cancel but the one in flight.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from saga import ConcurrencyException, Saga, Status
from tests.apps import fault_chain, fault_events
from tests.faults.support import Figure, Figures, Ledger, Workers, wait_for

APP = "tests.apps.fault_events:saga"
INSTANCES = 40
THREADS_CALLING = 8
CALLS = 1000
CANCELS = 400
PROCESSES = 2
THREADS = 4
OPTIONS = ("--workers", str(THREADS), "--heartbeat-timeout", "5", "--poll-interval", "0.5",
           "--grace", "10", "--log-level", "WARNING")
AUDIT = """
CREATE TABLE {s}.calls (
    instance text        NOT NULL,
    k        integer     NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class Events:
    """The fault_events saga on the test's schema, its tables, and its worker processes."""

    def __init__(self, ledger: Ledger, workers: Workers) -> None:
        self.ledger, self.workers = ledger, workers
        self.saga = fault_events.build(ledger.schema, ledger.dsn)
        self.saga.init_db()
        with psycopg.connect(ledger.dsn, autocommit=True) as conn:
            fault_events.create_tables(conn, ledger.schema)
            fault_chain.create_tables(conn, ledger.schema, effects=False)
            conn.execute(ledger.sql(AUDIT))

    def start_workers(self) -> None:
        started = [self.workers.start(APP, *OPTIONS) for _ in range(PROCESSES)]
        self.workers.wait_registered(self.ledger, started)

    def stop_workers(self) -> list[int]:
        """SIGTERM the workers; return their exit codes."""
        for w in self.workers.started:
            w.terminate()
        return [w.wait(30) for w in self.workers.started]

    def close(self) -> None:
        self.saga.close()


@pytest.fixture
def events(ledger: Ledger, workers: Workers) -> Iterator[Events]:
    found = Events(ledger, workers)
    yield found
    found.close()


def in_threads(target: Callable[..., None], jobs: list[Any], dsn: str) -> float:
    """Run *target(pool, job, seed)* for each job, one thread each, sharing a pool of a
    connection per thread; return how long they took."""
    with ConnectionPool(dsn, min_size=len(jobs), max_size=len(jobs), open=True) as pool:
        threads = [threading.Thread(target=target, name=f"caller-{n}", args=(pool, job, n))
                   for n, job in enumerate(jobs)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        return time.monotonic() - began


# -- call() ---------------------------------------------------------------------------------


@dataclass
class Calls:
    """What the callers saw: the calls that raised, by k, and any other error."""

    refused: dict[int, str] = field(default_factory=dict)  # k: the exception's message
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def calling(saga: Saga, ledger: Ledger, calls: Calls) -> Callable[..., None]:
    """A caller: call random instances with each k of its range, auditing the calls that
    succeed in their own transaction."""
    audit = ledger.sql("INSERT INTO {s}.calls (instance, k) VALUES (%s, %s)")

    def call(pool: ConnectionPool[Any], ks: range, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for k in ks:
                instance = f"e{rng.randrange(INSTANCES)}"
                try:
                    with pool.connection() as conn, conn.transaction():
                        saga.call(instance, "event", fault_events.Event(k), conn=conn)
                        conn.execute(audit, (instance, k))
                except ConcurrencyException as e:
                    with calls.lock:
                        calls.refused[k] = str(e)
                time.sleep(rng.uniform(0, 0.01))  # spread the calls over the run
        except BaseException as e:  # reported by the test
            with calls.lock:
                calls.errors.append(e)

    return call


@dataclass
class Verdict:
    """Each audited call, classified by what followed it on its instance."""

    applied: set[int] = field(default_factory=set)
    superseded: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    wrong: list[str] = field(default_factory=list)  # events that ran what no call asked


def judge(ledger: Ledger) -> Verdict:
    """Merge the audit rows and the events of each instance by time, and classify."""
    verdict = Verdict()
    timeline = ledger.rows(
        "SELECT instance, at, 'call', k FROM {s}.calls UNION ALL "
        "SELECT instance, at, 'event', k FROM {s}.applied ORDER BY 1, 2")
    pending: dict[str, int | None] = {}
    for instance, _, kind, k in timeline:
        latest = pending.get(instance)
        if kind == "call":
            if latest is not None:
                verdict.superseded.add(latest)
            pending[instance] = k
        elif latest == k:
            verdict.applied.add(k)
            pending[instance] = None
        else:
            verdict.wrong.append(f"{instance} ran k={k}; its latest call was {latest}")
    verdict.lost = {k for k in pending.values() if k is not None}
    return verdict


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_calls_racing_workers_are_applied_or_refused_never_lost(
    dsn: str, events: Events, ledger: Ledger, figures: Figures
) -> None:
    for i in range(INSTANCES):
        events.saga.start(f"e{i}", "wait", delay=fault_events.HOUR)
    events.start_workers()

    calls = Calls()
    per = CALLS // THREADS_CALLING
    took = in_threads(calling(events.saga, ledger, calls),
                      [range(n * per, (n + 1) * per) for n in range(THREADS_CALLING)], dsn)
    assert calls.errors == []
    wait_for(lambda: ledger.one("SELECT count(*) FROM {s}.instance "
                                "WHERE NOT (status = 0 AND step = 'wait')") == 0,
             60, "every instance waiting again")
    exits = events.stop_workers()

    verdict = judge(ledger)
    ran = Counter(k for (k,) in ledger.rows("SELECT k FROM {s}.applied"))
    both = sorted(set(calls.refused) & set(ran))
    audited = {k for (k,) in ledger.rows("SELECT k FROM {s}.calls")}
    waiting = sum(1 for m in calls.refused.values() if "earlier call" in m)
    figures.record(Figure(
        fault="Races: call() against busy workers",
        load=f"{INSTANCES} sagas kept busy by {PROCESSES} worker processes x {THREADS} "
             f"threads (an event step, then {fault_events.TICKS} short ones)",
        injected=f"{CALLS:,} call()s from {THREADS_CALLING} threads over {took:.1f} s",
        lost=len(verdict.lost) + len(verdict.superseded),
        running=ledger.count(Status.RUNNING),
        reexecuted=sum(n - 1 for n in ran.values()),
        recovery="n/a",
        details={
            "applied (the step ran with the call's input, once)": len(verdict.applied),
            "refused: the instance was running": len(calls.refused) - waiting,
            "refused: an earlier call's step had not run yet": waiting,
            "superseded (a later call replaced it before it ran)": len(verdict.superseded),
            "refused and yet ran (\"both\")": len(both),
            "events that ran an input no call was waiting for": len(verdict.wrong),
        },
    ), dsn)

    assert exits == [0] * PROCESSES
    assert len(audited) + len(calls.refused) == CALLS  # each call succeeded or raised
    assert both == []
    assert verdict.wrong == []
    assert verdict.lost == set()
    assert verdict.superseded == set()
    assert verdict.applied == audited
    assert set(ran) == verdict.applied
    assert set(ran.values()) <= {1}  # exactly once
    assert calls.refused  # the race was real: both outcomes happened
    assert verdict.applied


# -- cancel() -------------------------------------------------------------------------------


@dataclass
class Cancels:
    """What the cancellers saw: per instance, when an accepted cancel committed and the
    status it left (CANCELLED: it was pending; RUNNING: flagged), or the refusal."""

    accepted: dict[str, tuple[datetime, Status]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def cancelling(saga: Saga, ledger: Ledger, cancels: Cancels) -> Callable[..., None]:
    """A canceller: cancel each of its instances once, at a random moment."""
    after = ledger.sql("SELECT clock_timestamp(), status FROM {s}.instance "
                     "WHERE name = 'fault_events' AND instance_id = %s")

    def cancel(pool: ConnectionPool[Any], instances: list[str], seed: int) -> None:
        rng = random.Random(seed)
        try:
            for instance in instances:
                time.sleep(rng.uniform(0, 0.03))
                try:
                    with pool.connection() as conn, conn.transaction():
                        saga.cancel(instance, conn=conn)
                        row = conn.execute(after, (instance,)).fetchone()
                    assert row is not None
                    with cancels.lock:
                        cancels.accepted[instance] = (row[0], Status(row[1]))
                except ConcurrencyException as e:
                    with cancels.lock:
                        cancels.refused[instance] = str(e)
        except BaseException as e:  # reported by the test
            with cancels.lock:
                cancels.errors.append(e)

    return cancel


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cancels_racing_workers_stop_at_the_step_boundary_or_are_refused(
    dsn: str, events: Events, ledger: Ledger, figures: Figures
) -> None:
    ids = [f"w{i}" for i in range(CANCELS)]
    events.saga.start_many("work", [(i, fault_events.Work(1)) for i in ids])
    events.start_workers()
    cancels = Cancels()
    shuffled = random.Random(3).sample(ids, len(ids))
    per = CANCELS // THREADS_CALLING
    took = in_threads(cancelling(events.saga, ledger, cancels),
                      [shuffled[n * per:(n + 1) * per] for n in range(THREADS_CALLING)], dsn)
    assert cancels.errors == []
    wait_for(lambda: ledger.one("SELECT count(*) FROM {s}.instance "
                                "WHERE status IN (0, 1)") == 0, 60, "every saga finished")
    exits = events.stop_workers()

    final = dict(ledger.rows("SELECT instance_id, status FROM {s}.instance"))
    steps = Counter(i for (i,) in ledger.rows("SELECT instance FROM {s}.executed"))
    begun_after = {i: int(ledger.one("SELECT count(*) FROM {s}.executed WHERE instance = %s "
                                     "AND at > %s", i, at))
                   for i, (at, _) in cancels.accepted.items()}
    was_pending = {i for i, (_, s) in cancels.accepted.items() if s is Status.CANCELLED}
    was_running = {i for i, (_, s) in cancels.accepted.items() if s is Status.RUNNING}
    done = fault_events.WORK_STEPS
    wrong = sorted(
        [f"{i}: refused ({m}) but ended {Status(final[i]).name}"
         for i, m in cancels.refused.items() if final[i] != Status.COMPLETE or steps[i] != done]
        + [f"{i}: cancelled while pending, yet {n} step(s) began after"
           for i, n in begun_after.items() if i in was_pending and n > 0]
        + [f"{i}: cancelled while running, yet {n} step(s) began after"
           for i, n in begun_after.items() if i in was_running and n > 1]
        + [f"{i}: cancelled, yet ended {Status(final[i]).name} after {steps[i]} steps"
           for i in cancels.accepted if final[i] != Status.CANCELLED
           and not (final[i] == Status.COMPLETE and i in was_running and steps[i] == done)])
    completed_anyway = sum(1 for i in was_running if final[i] == Status.COMPLETE)
    figures.record(Figure(
        fault="Races: cancel() against busy workers",
        load=f"{CANCELS} sagas of {done} steps (every other one delayed), {PROCESSES} worker "
             f"processes x {THREADS} threads",
        injected=f"{CANCELS} cancel()s, one per saga at a random moment, from "
                 f"{THREADS_CALLING} threads over {took:.1f} s",
        lost=len(wrong),
        running=ledger.count(Status.RUNNING),
        recovery="n/a",
        details={
            "cancelled while PENDING (CANCELLED at once)": len(was_pending),
            "cancelled while RUNNING, ended CANCELLED at the step boundary":
                len(was_running) - completed_anyway,
            "cancelled while RUNNING its last step, which completed it": completed_anyway,
            "refused: already finished": len(cancels.refused),
            "cancels not honoured (refused yet cancelled, or a step begun after)": len(wrong),
        },
    ), dsn)

    assert exits == [0] * PROCESSES
    assert len(cancels.accepted) + len(cancels.refused) == CANCELS
    assert set(final.values()) <= {Status.COMPLETE, Status.CANCELLED}
    assert wrong == []
    assert was_pending  # the race was real: each outcome happened
    assert was_running
    assert cancels.refused
    assert ledger.one("SELECT count(*) FROM {s}.instance WHERE cancel_requested "
                      "AND status NOT IN (2, 3, 4)") == 0
