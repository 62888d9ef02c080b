"""The runner: wake-ups (NOTIFY, polling), stop, several sagas, leases, no step run twice."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from saga import Saga, Status
from saga.runner import Runner
from tests.helpers import Db, LiveRun, poll, running, seconds, wait_until

# -- wake-ups ---------------------------------------------------------------------------


def test_start_wakes_an_idle_worker_through_notify(saga: Saga, db: Db) -> None:
    @saga.step
    def work(input: object) -> None: ...

    with running(saga, db, workers=1, poll_interval=30.0):
        wait_until(db.listeners)
        for instance in ("first", "second"):
            saga.start(instance, work, 1)
            wait_until(lambda i=instance: saga.get(i).status is Status.COMPLETE, timeout=2.0)


def test_a_row_that_sends_no_notify_is_found_by_polling(saga: Saga, db: Db) -> None:
    @saga.step
    def work(input: object) -> None: ...

    with running(saga, db, workers=1, poll_interval=0.2):
        db.rows("INSERT INTO {s}.instance (name, instance_id, step, input) "
                "VALUES ('test', 'quiet', 'work', '1')")
        wait_until(lambda: saga.get("quiet").status is Status.COMPLETE, timeout=5.0)


def test_delayed_continuation_runs_after_its_delay(saga: Saga, db: Db) -> None:
    claimed = {}

    @saga.step
    def first(input: object) -> object:
        claimed["first"] = saga.get("i").updated_at
        return second(input, delay=0.5)

    @saga.step
    def second(input: object) -> None:
        claimed["second"] = saga.get("i").updated_at

    with running(saga, db, workers=1, poll_interval=30.0):
        saga.start("i", first, 1)
        wait_until(lambda: saga.get("i").status is Status.COMPLETE)
    assert 0.5 <= seconds(claimed["second"], claimed["first"]) < 3.0


# -- stop -------------------------------------------------------------------------------


def test_stop_waits_for_the_step_in_flight(saga: Saga, db: Db) -> None:
    started, stopped, events = threading.Event(), threading.Event(), []
    stopped_at: list[object] = []

    def beats_after_stop() -> bool:
        return bool(db.one("SELECT count(*) FROM {s}.runner WHERE heartbeat_at > %s",
                           stopped_at[0]))

    @saga.step
    def work(input: object) -> str:
        started.set()
        stopped.wait(10.0)
        # stop() was called, yet the runner lives on (heartbeat and all) until we return
        events.append(("step finished", poll(beats_after_stop, 10.0)))
        return "done"

    saga.start("i", work, 1)
    live = LiveRun(saga, db, workers=2, heartbeat_timeout=2.0)
    try:
        assert started.wait(10.0)
        saga.stop()
        stopped_at.append(db.now())
        assert saga.get("i").status is Status.RUNNING
    finally:
        stopped.set()
        saga.stop()
    stats = live.join()
    events.append("run returned")
    assert events == [("step finished", True), "run returned"]
    assert (saga.get("i").status, saga.get("i").state) == (Status.COMPLETE, "done")
    assert db.runner_ids() == set()
    assert stats.completed == 1


def test_stop_hands_an_undelayed_continuation_on_as_pending(saga: Saga, db: Db) -> None:
    started, release, ran = threading.Event(), threading.Event(), []

    @saga.step
    def first(input: object) -> object:
        started.set()
        release.wait(10.0)
        return second(input)

    @saga.step
    def second(input: object) -> None:
        ran.append(input)

    saga.start("i", first, 1)
    live = LiveRun(saga, db, workers=1)
    try:
        assert started.wait(10.0)
        saga.stop()
    finally:
        release.set()
        saga.stop()
    live.join()
    row = saga.get("i")
    assert (row.status, row.step, row.attempts, row.runner_id) == (Status.PENDING, "second", 0,
                                                                   None)
    assert row.run_after <= db.now()
    assert ran == []
    assert db.runner_ids() == set()


# -- several sagas, several runners -----------------------------------------------------


def test_one_runner_runs_several_sagas_across_schemas(
    make_saga: Callable[..., Saga], dsn: str, other_schema: str
) -> None:
    def define(s: Saga, index: int) -> None:
        @s.step
        def go(input: int) -> object:  # the same step names in each saga
            return done(input + index)

        @s.step
        def done(input: int) -> int:
            return input

        for n in range(3):
            s.start(f"i{n}", go, n)

    sagas = [make_saga("orders"), make_saga("refunds"),
             make_saga("shipping", schema=other_schema)]
    for index, s in enumerate(sagas):
        define(s, index)
    stats = Runner(sagas, workers=2).run(drain=True)
    for index, s in enumerate(sagas):
        assert [s.get(f"i{n}").state for n in range(3)] == [n + index for n in range(3)]
        assert {s.get(f"i{n}").status for n in range(3)} == {Status.COMPLETE}
    assert (stats.steps, stats.completed) == (18, 9)


def test_a_long_step_is_not_released_by_another_sagas_heartbeat(
    make_saga: Callable[..., Saga], db: Db
) -> None:
    # Two sagas on one schema, each with its own pool (the usual Saga(name, dsn)): a step
    # of one that runs long must stay its own, however the other saga's side beats.
    quick, slow = make_saga("quick"), make_saga("slow")
    runs, stale_checks = [], []

    @quick.step
    def nothing(input: object) -> None: ...

    @slow.step
    def long(input: object) -> str:
        runs.append(slow.get("i").attempts)
        if len(runs) == 1:  # look as if the step had run for a minute already
            backdated = db.one("UPDATE {s}.instance SET updated_at = now() - interval '1 min'"
                               " WHERE instance_id = 'i' RETURNING now()")
            stale_checks.append(poll(lambda: db.one(  # heartbeats (so stale-row checks)
                "SELECT count(*) FROM {s}.runner "
                "WHERE heartbeat_at > %s + interval '300 milliseconds'", backdated), 10.0))
        return "done once"

    slow.start("i", long, 1)
    Runner([quick, slow], workers=2, heartbeat_timeout=0.4).run(drain=True)
    assert runs == [1]
    assert len(stale_checks) == 1
    assert stale_checks[0], "no heartbeat ran while the step looked stale"
    row = slow.get("i")
    assert (row.status, row.state, row.attempts) == (Status.COMPLETE, "done once", 1)


def test_two_runners_never_run_a_step_twice(make_saga: Callable[..., Saga], db: Db) -> None:
    counts, runners, lock = Counter[tuple[str, str]](), Counter[str](), threading.Lock()

    def define(s: Saga) -> Any:
        def count(name: str, input: str, logger: logging.LoggerAdapter[Any]) -> None:
            with lock:
                counts[input, name] += 1
                runners[logger.extra["runner"]] += 1  # type: ignore[index]

        @s.step
        def one(input: str, state: object, set_state: object, logger: Any) -> object:
            count("one", input, logger)
            return two(input)

        @s.step
        def two(input: str, state: object, set_state: object, logger: Any) -> object:
            count("two", input, logger)
            return three(input)

        @s.step
        def three(input: str, state: object, set_state: object, logger: Any) -> None:
            count("three", input, logger)

        return one

    a, b = make_saga("race"), make_saga("race")
    one = define(a)
    define(b)
    with running(a, db, workers=2, poll_interval=0.2), \
            running(b, db, workers=2, poll_interval=0.2):
        wait_until(lambda: len(db.listeners()) == 2)
        for n in range(200):
            a.start(f"i{n}", one, f"i{n}")
        wait_until(lambda: db.one("SELECT count(*) FROM {s}.instance WHERE status = 2") == 200,
                   timeout=60.0)
    assert len(counts) == 600
    assert set(counts.values()) == {1}
    assert db.rows("SELECT status, attempts, count(*) FROM {s}.instance "
                   "GROUP BY 1, 2") == [(Status.COMPLETE, 1, 200)]
    assert len(runners) == 2  # both runners took part
