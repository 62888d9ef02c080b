"""Fault 7: poison and garbage. Rows written with plain SQL that no `start()` would write
— a payload that does not decode into the step's annotated type, NULLs, JSON nested too
deep, absurd attempt counts, RUNNING rows without a live runner — each end where the
README says (ERROR with a message naming the problem, or recovered and run), while the
worker keeps serving the good rows. A step that always raises ends in ERROR after
max_attempts, its traceback kept, with exponential backoff between the attempts (no hot
loop).

A row of a step that no worker serves cannot end in ERROR: workers claim only the steps
they have registered (so that during a rolling deploy an old worker never fails the
rows of a step only the new code knows). It stays PENDING with no attempt, and is found
by the query `python -m saga stats` uses for "orphaned" rows (due rows whose step no
live runner serves), which the test runs.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from saga import Saga, Status
from saga.admin.queries import AdminStore
from tests.faults.support import Figure, Figures, seconds, wait_for
from tests.helpers import Db, running


@dataclass
class Job:
    id: str


@dataclass
class Tally:
    count: int



@dataclass(frozen=True)
class Garbage:
    """A row as plain SQL could write it, and where it must end."""

    step: str
    input: str | None  # JSON text, or None for SQL NULL
    state: str | None = None
    status: Status = Status.PENDING
    attempts: int = 0
    runner_id: str | None = None
    ends: Status = Status.ERROR
    says: str = ""  # what its error must contain


GARBAGE = {
    "unknown-step": Garbage("gone", '{"id": "x"}', ends=Status.PENDING),
    "unknown-field": Garbage("typed", '{"idx": 1}', says=(
        "input of step 'typed' does not decode: $: unknown field(s) ['idx'] for Job")),
    "wrong-type": Garbage("typed", '"just text"', says=(
        "input of step 'typed' does not decode: $: expected an object for Job")),
    "json-null-input": Garbage("typed", "null", says="input of step 'typed' does not decode"),
    "sql-null-input": Garbage("typed", None, says="input of step 'typed'"),
    "bad-state": Garbage("typed", '{"id": "x"}', state="[1, 2]", says=(
        "state of step 'typed' does not decode: $: expected an object for Tally")),
    "nested-too-deep": Garbage("plain", "[" * 3000 + "]" * 3000, says="nested too deeply"),
    "crash-looped": Garbage("plain", "1", attempts=1_000_000,
                            says="claimed 1000000 times without finishing"),
    "running-no-runner": Garbage("plain", "2", status=Status.RUNNING, attempts=1,
                                 ends=Status.COMPLETE),
    "running-dead-runner": Garbage("plain", "3", status=Status.RUNNING, attempts=1,
                                   runner_id="nobody:1:dead", ends=Status.COMPLETE),
    "pending-with-runner": Garbage("plain", "4", runner_id="nobody:1:dead",
                                   ends=Status.COMPLETE),
}
GOOD = 30


def garbage_saga(saga: Saga, ran: list[object]) -> None:
    @saga.step
    def typed(input: Job, state: Tally | None) -> None:
        ran.append(input)
        input.id.upper()  # what a step does with its input: None would fail here

    @saga.step
    def plain(input: object) -> None:
        ran.append(input)


def first_line(error: str | None) -> str:
    return (error or "no error").splitlines()[0][:120]


def insert_garbage(db: Db) -> None:
    for instance, g in GARBAGE.items():
        db.rows("INSERT INTO {s}.instance (name, instance_id, step, input, state, status, "
                "attempts, runner_id) VALUES ('poison', %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s)",
                instance, g.step, g.input, g.state, int(g.status), g.attempts, g.runner_id)


def test_garbage_rows_end_in_error_and_the_worker_goes_on(
    make_saga: Callable[..., Saga], db: Db, dsn: str, figures: Figures
) -> None:
    saga = make_saga("poison", max_attempts=3)
    ran: list[object] = []
    garbage_saga(saga, ran)
    insert_garbage(db)
    for i in range(GOOD // 2):
        saga.start(f"good-{i}", "typed", Job(f"g{i}"))
    finished = [i for i, g in GARBAGE.items() if g.ends is not Status.PENDING]
    with running(saga, db, workers=2, heartbeat_timeout=1.0, poll_interval=0.2):
        wait_for(lambda: db.one("SELECT count(*) FROM {s}.instance WHERE status IN (2, 3) "
                                "AND instance_id = ANY(%s)", finished) == len(finished), 30,
                 "every garbage row that can finish, finished")
        for i in range(GOOD // 2, GOOD):  # the worker still serves good rows
            saga.start(f"good-{i}", "plain", i)
        wait_for(lambda: db.one("SELECT count(*) FROM {s}.instance WHERE status = 2 "
                                "AND instance_id LIKE 'good-%%'") == GOOD, 30,
                 "the good rows complete")
        # A row of a step no live runner serves is left alone, and `saga stats` finds it.
        with db.conn.transaction():
            unserved = [(n, step, count) for n, step, count, _ in
                        AdminStore(db.schema).stats(db.conn).orphaned]
    rows = {r[0]: r[1:] for r in db.rows(
        "SELECT instance_id, status, attempts, error FROM {s}.instance")}
    outcomes = {i: f"{Status(rows[i][0]).name}: {first_line(rows[i][2])}" for i in GARBAGE}
    wrong = {i: outcomes[i] for i, g in GARBAGE.items()
             if rows[i][0] != g.ends or g.says not in (rows[i][2] or "")}
    figures.record(Figure(
        fault="Poison and garbage rows",
        load=f"{len(GARBAGE)} rows written with SQL, {GOOD} good ones, 1 runner x 2 threads",
        injected=", ".join(GARBAGE),
        lost=GOOD - sum(1 for i, r in rows.items() if i.startswith("good-") and r[0] == 2),
        running=sum(1 for r in rows.values() if r[0] == Status.RUNNING),
        recovery="n/a",
        details={"outcomes": outcomes, "garbage rows not ending as expected": sorted(wrong)},
    ), dsn)

    assert unserved == [("poison", "gone", 1)]
    assert rows["unknown-step"][:2] == (Status.PENDING, 0)
    assert wrong == {}


def test_a_step_that_always_raises_backs_off_then_errors_with_its_traceback(
    make_saga: Callable[..., Saga], db: Db, dsn: str, figures: Figures
) -> None:
    attempts, base = 6, 0.05
    saga = make_saga("poison", max_attempts=attempts, backoff_base=base, backoff_max=10.0)
    due: list[datetime] = []
    lock = threading.Lock()

    @saga.step
    def doomed(input: object) -> None:
        with lock:
            due.append(saga.get("doomed").run_after)  # when this attempt fell due
        raise RuntimeError(f"always fails ({input})")

    saga.start("doomed", doomed, "poison")
    with running(saga, db, workers=2, poll_interval=0.2):
        wait_for(lambda: saga.get("doomed").status is Status.ERROR, 30, "doomed in ERROR")
    row = saga.get("doomed")
    gaps = [seconds(b, a) for a, b in itertools.pairwise(due)]
    floors = [0.75 * base * 2**n for n in range(attempts - 1)]  # the backoff, least jitter
    figures.record(Figure(
        fault="Poison: a step that always raises",
        load=f"1 saga, max_attempts={attempts}, backoff_base={base:g} s",
        injected="RuntimeError on every attempt",
        lost=0 if row.status is Status.ERROR else 1,
        running=int(row.status is Status.RUNNING),
        reexecuted=len(due) - 1,
        recovery="n/a",
        details={"gaps between attempts falling due": ", ".join(f"{g:.2f} s" for g in gaps),
                 "least gaps the backoff allows": ", ".join(f"{f:.3f} s" for f in floors)},
    ), dsn)

    assert (row.status, row.attempts, len(due)) == (Status.ERROR, attempts, attempts)
    assert row.error is not None
    assert row.error.startswith("Traceback (most recent call last):")
    assert "RuntimeError: always fails (poison)" in row.error
    assert all(g >= f - 0.005 for g, f in zip(gaps, floors, strict=True)), (gaps, floors)
