"""The worker, from the public API: every state transition of DESIGN.md, leases, wake-ups,
graceful stop, several sagas in one runner, and no step ever running twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from saga import ConcurrencyException, RunStats, Saga, SagaError, Status
from saga.runner import Runner
from tests.helpers import wait_until

FAR = 3600.0  # a delay no test waits for: rows delayed this long are made due by SQL


@dataclass
class Order:
    sku: str
    qty: int


@dataclass
class Tally:
    skus: list[str]


class Db:
    """Plain SQL on the test's schema ({s} in a query), each statement on its own."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn, self.schema = dsn, schema

    def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        text = sql.SQL(query).format(s=sql.Identifier(self.schema))  # type: ignore[arg-type]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(text, params)
            return cur.fetchall() if cur.description else []

    def one(self, query: str, *params: object) -> Any:
        return self.rows(query, *params)[0][0]

    def make_due(self, instance: str) -> None:
        self.rows("UPDATE {s}.instance SET run_after = now() WHERE instance_id = %s", instance)

    def steal(self, instance: str) -> None:
        """Give a RUNNING row to another, live runner: the worker's lease is lost."""
        self.rows("INSERT INTO {s}.runner (id, hostname, pid, serves) "
                  "VALUES ('thief', 'elsewhere', 1, '{{}}') ON CONFLICT DO NOTHING")
        self.rows("UPDATE {s}.instance SET runner_id = 'thief' WHERE instance_id = %s", instance)

    def runner_ids(self) -> set[str]:
        return {r for (r,) in self.rows("SELECT id FROM {s}.runner")}

    def listening(self) -> int:
        """The number of idle sessions LISTENing on the schema's channel (runners' listeners)."""
        return int(self.one("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' "
                            "AND query = %s", f'LISTEN "pgsaga_{self.schema}"'))


@pytest.fixture
def db(dsn: str, schema: str) -> Db:
    return Db(dsn, schema)


@pytest.fixture
def make_saga(dsn: str, schema: str) -> Iterator[Callable[..., Saga]]:
    """Make initialised sagas on the test's schema (fast retries unless told), closed after."""
    made: list[Saga] = []

    def make(name: str = "test", **options: Any) -> Saga:
        options = {"schema": schema, "backoff_base": 0.05, "backoff_max": 0.2, **options}
        s = Saga(name, dsn, **options)
        made.append(s)
        s.init_db()
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def saga(make_saga: Callable[..., Saga]) -> Saga:
    return make_saga()


@pytest.fixture
def slow_retry_saga(make_saga: Callable[..., Saga]) -> Saga:
    """Retries far in the future, so that a drain runs exactly one attempt of a failing step."""
    return make_saga(max_attempts=3, backoff_base=30.0, backoff_max=120.0)


@pytest.fixture
def other_schema(dsn: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def claims(db: Db, saga: Saga) -> Callable[[], int]:
    """Count claims (PENDING -> RUNNING) with a trigger: the database's own account."""
    db.rows("CREATE TABLE {s}.claims (id bigint)")
    db.rows("CREATE FUNCTION {s}.count_claim() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN INSERT INTO {db.schema}.claims VALUES (NEW.id); RETURN NEW; END $$")
    db.rows("CREATE TRIGGER count_claim AFTER UPDATE ON {s}.instance FOR EACH ROW "
            "WHEN (OLD.status = 0 AND NEW.status = 1) EXECUTE FUNCTION {s}.count_claim()")
    return lambda: int(db.one("SELECT count(*) FROM {s}.claims"))


class LiveRun:
    """`saga.run(...)` in a thread, started once its runner row exists."""

    def __init__(self, saga: Saga, db: Db, **options: Any) -> None:
        self.saga = saga
        self.result: list[object] = []
        before = db.runner_ids()

        def target() -> None:
            try:
                self.result.append(saga.run(**options))
            except BaseException as e:  # reported by join()
                self.result.append(e)

        self.thread = threading.Thread(target=target, name="test-run", daemon=True)
        self.thread.start()
        wait_until(lambda: self.result or db.runner_ids() - before)
        assert not self.result, self.result

    def join(self) -> RunStats:
        self.thread.join(15.0)
        assert not self.thread.is_alive(), "run() did not return"
        assert isinstance(self.result[0], RunStats), self.result
        return self.result[0]


@contextmanager
def running(saga: Saga, db: Db, **options: Any) -> Iterator[LiveRun]:
    options.setdefault("workers", 2)
    live = LiveRun(saga, db, **options)
    try:
        yield live
    finally:
        saga.stop()
        live.thread.join(15.0)
    live.join()


def holds_within(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll *predicate* until true (True) or *timeout* (False): `wait_until` for a step,
    which must not fail the test from a worker thread.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def seconds(later: Any, earlier: Any) -> float:
    return float((later - earlier).total_seconds())


# -- the state machine ------------------------------------------------------------------


def test_start_makes_a_pending_instance(saga: Saga, db: Db) -> None:
    @saga.step
    def work(input: object) -> None: ...

    saga.start("i", work, {"n": 1}, {"s": 0})
    row = saga.get("i")
    assert (row.status, row.step, row.input, row.state) == (Status.PENDING, "work", {"n": 1},
                                                            {"s": 0})
    assert (row.attempts, row.error, row.runner_id) == (0, None, None)
    assert row.run_after <= db.one("SELECT now()")


def test_claim_makes_it_running_for_this_runner(saga: Saga) -> None:
    seen = []

    @saga.step
    def work(input: object) -> str:
        seen.append(saga.get("i"))
        return "done"

    saga.start("i", work, 1)
    stats = saga.run(workers=1, drain=True)
    [inside] = seen
    assert (inside.status, inside.attempts) == (Status.RUNNING, 1)
    assert inside.runner_id
    row = saga.get("i")
    assert (row.status, row.state, row.attempts, row.runner_id) == (Status.COMPLETE, "done", 1,
                                                                    None)
    assert (stats.steps, stats.completed) == (1, 1)


def test_undelayed_continuation_runs_on_on_the_same_thread(
    saga: Saga, claims: Callable[[], int]
) -> None:
    seen: list[tuple[str, int, Any]] = []

    @saga.step
    def first(input: int) -> object:
        seen.append(("first", threading.get_ident(), saga.get("i")))
        return second(input + 1, {"from": "first"})

    @saga.step
    def second(input: int, state: object) -> None:
        seen.append(("second", threading.get_ident(), saga.get("i")))
        assert (input, state) == (2, {"from": "first"})

    saga.start("i", first, 1)
    saga.run(workers=4, drain=True)
    (_, thread_1, row_1), (_, thread_2, row_2) = seen
    assert thread_1 == thread_2
    assert (row_2.status, row_2.step, row_2.attempts) == (Status.RUNNING, "second", 1)
    assert row_2.runner_id == row_1.runner_id
    assert claims() == 1
    assert saga.get("i").status is Status.COMPLETE


def test_delayed_continuation_goes_back_to_pending(saga: Saga, db: Db) -> None:
    @saga.step
    def first(input: str) -> object:
        return later(input, None if input == "keep" else {"new": True}, delay=FAR)

    @saga.step
    def later(input: str) -> None: ...

    saga.start("keep", first, "keep", {"old": True})
    saga.start("replace", first, "replace", {"old": True})
    saga.run(workers=2, drain=True)
    now = db.one("SELECT now()")
    for instance, state in [("keep", {"old": True}), ("replace", {"new": True})]:
        row = saga.get(instance)
        assert (row.status, row.step, row.input, row.state) == (Status.PENDING, "later",
                                                                instance, state)
        assert (row.attempts, row.runner_id, row.error) == (0, None, None)
        assert seconds(row.run_after, row.updated_at) == pytest.approx(FAR, abs=1e-3)
        assert seconds(row.run_after, now) > FAR - 60


def test_return_value_completes_with_that_state_and_none_keeps_it(saga: Saga) -> None:
    @saga.step
    def work(input: str) -> object:
        return None if input == "none" else {"result": input}

    saga.start("value", work, "value", {"before": 1})
    saga.start("none", work, "none", {"before": 1})
    stats = saga.run(workers=2, drain=True)
    assert saga.get("value").state == {"result": "value"}
    assert saga.get("none").state == {"before": 1}
    assert {saga.get(i).status for i in ("value", "none")} == {Status.COMPLETE}
    assert stats.completed == 2


def test_saga_error_fails_for_good_without_retry(saga: Saga) -> None:
    runs = []

    @saga.step
    def work(input: object) -> None:
        runs.append(input)
        raise SagaError("card declined")

    saga.start("i", work, 1)
    stats = saga.run(workers=1, drain=True)
    row = saga.get("i")
    assert (row.status, row.error, row.attempts, row.runner_id) == (Status.ERROR,
                                                                    "card declined", 1, None)
    assert runs == [1]
    assert (stats.failed, stats.retried) == (1, 0)


def test_exception_retries_with_backoff_then_errors(slow_retry_saga: Saga, db: Db) -> None:
    saga, attempts = slow_retry_saga, []

    @saga.step
    def flaky(input: object) -> None:
        attempts.append(saga.get("i").attempts)
        raise RuntimeError(f"boom {len(attempts)}")

    saga.start("i", flaky, 1)
    for attempt, backoff in [(1, 30.0), (2, 60.0)]:
        saga.run(workers=1, drain=True)
        row = saga.get("i")
        assert (row.status, row.attempts, row.step, row.runner_id) == (Status.PENDING, attempt,
                                                                       "flaky", None)
        assert "Traceback" in row.error
        assert f"RuntimeError: boom {attempt}" in row.error
        assert 0.75 * backoff - 1e-3 <= seconds(row.run_after, row.updated_at) <= backoff + 1e-3
        db.make_due("i")
    stats = saga.run(workers=1, drain=True)
    row = saga.get("i")
    assert (row.status, row.attempts) == (Status.ERROR, 3)
    assert "RuntimeError: boom 3" in row.error
    assert "boom 2" not in row.error
    assert attempts == [1, 2, 3]
    assert (stats.failed, stats.retried) == (1, 0)


def test_call_on_pending_replaces_step_input_and_run_after(slow_retry_saga: Saga, db: Db) -> None:
    saga, ran = slow_retry_saga, []

    @saga.step
    def first(input: object) -> None:
        raise RuntimeError("not yet")

    @saga.step
    def other(input: object) -> None:
        ran.append(input)

    saga.start("i", first, "old")
    saga.run(workers=1, drain=True)  # one failed attempt: attempts 1, an error, a backoff
    saga.call("i", "other", "new", delay=FAR)
    row = saga.get("i")
    assert (row.status, row.step, row.input, row.attempts, row.error) == (Status.PENDING,
                                                                          "other", "new", 0, None)
    assert seconds(row.run_after, row.updated_at) == pytest.approx(FAR, abs=1e-3)
    saga.call("i", other, "newer")
    assert saga.get("i").run_after <= db.one("SELECT now()")
    saga.run(workers=1, drain=True)
    assert ran == ["newer"]
    assert saga.get("i").status is Status.COMPLETE


# -- dying runners ----------------------------------------------------------------------


def test_reaper_returns_a_dead_runners_rows_then_they_complete(
    make_saga: Callable[..., Saga], db: Db
) -> None:
    real, observer = make_saga("reaped"), make_saga("reaped")
    seen = []

    @real.step
    def work(input: object) -> str:
        seen.append(real.get("i"))
        return "recovered"

    @observer.step
    def other(input: object) -> None: ...  # not `work`: this runner only reaps

    db.rows("INSERT INTO {s}.runner (id, hostname, pid, serves, heartbeat_at) "
            "VALUES ('dead', 'gone', 1, '{{}}', now() - interval '1 hour')")
    real.start("i", work, 1)
    db.rows("UPDATE {s}.instance SET status = 1, runner_id = 'dead', attempts = 1")
    with running(observer, db, heartbeat_timeout=1.0):
        row = wait_until(lambda: (r := real.get("i")).status is Status.PENDING and r)
        assert "dead" not in db.runner_ids()
    assert (row.runner_id, row.attempts, row.step) == (None, 1, "work")
    assert row.error == "runner dead stopped during step work"
    assert row.run_after <= db.one("SELECT now()")

    with running(real, db):
        wait_until(lambda: real.get("i").status is Status.COMPLETE)
    [inside] = seen
    assert (inside.status, inside.attempts) == (Status.RUNNING, 2)
    assert real.get("i").state == "recovered"


def test_crash_looping_claims_end_in_error_without_running(
    make_saga: Callable[..., Saga], db: Db
) -> None:
    saga, runs = make_saga(max_attempts=3), []

    @saga.step
    def work(input: object) -> None:
        runs.append(input)

    saga.start("i", work, 1)
    db.rows("UPDATE {s}.instance SET attempts = 3")  # three claims whose runner died
    stats = saga.run(workers=1, drain=True)
    row = saga.get("i")
    assert row.status is Status.ERROR
    assert "claimed 3 times" in row.error
    assert "max_attempts=3" in row.error
    assert runs == []
    assert stats.failed == 1


# -- set_state --------------------------------------------------------------------------


def test_set_state_is_a_checkpoint_that_survives_a_failure(slow_retry_saga: Saga,
                                                           db: Db) -> None:
    saga, seen = slow_retry_saga, []

    @saga.step
    def work(input: object, state: Any, set_state: Callable[[object], None]) -> None:
        seen.append(state)
        if state is None:
            set_state({"progress": 1})
            raise RuntimeError("crash after the checkpoint")

    saga.start("i", work, 1)
    saga.run(workers=1, drain=True)
    assert saga.get("i").status is Status.PENDING
    assert saga.get_state("i") == {"progress": 1}
    db.make_due("i")
    saga.run(workers=1, drain=True)
    assert seen == [None, {"progress": 1}]
    assert saga.get("i").status is Status.COMPLETE


def test_set_state_after_losing_the_lease_raises(saga: Saga, db: Db) -> None:
    raised: list[BaseException] = []

    @saga.step
    def work(input: object, state: object, set_state: Callable[[object], None]) -> str:
        db.steal("i")
        try:
            set_state({"late": True})
        except ConcurrencyException as e:
            raised.append(e)
        return "outcome"

    saga.start("i", work, 1, {"kept": True})
    saga.run(workers=1, drain=True)
    assert len(raised) == 1
    row = saga.get("i")  # neither the checkpoint nor the outcome was written
    assert (row.status, row.runner_id, row.state) == (Status.RUNNING, "thief", {"kept": True})


# -- conn steps -------------------------------------------------------------------------


def effects(db: Db) -> list[str]:
    return [i for (i,) in db.rows("SELECT instance FROM {s}.effect ORDER BY instance")]


def test_conn_step_writes_roll_back_on_failure_and_commit_once(
    slow_retry_saga: Saga, db: Db
) -> None:
    saga, tries = slow_retry_saga, Counter[str]()
    db.rows("CREATE TABLE {s}.effect (instance text)")
    insert = sql.SQL("INSERT INTO {}.effect VALUES (%s)").format(sql.Identifier(db.schema))

    @saga.step
    def work(input: str, state: object, set_state: Callable[[object], None], *,
             conn: psycopg.Connection[Any]) -> object:
        tries[input] += 1
        conn.execute(insert, (input,))
        if input == "flaky" and tries[input] == 1:
            set_state({"checkpoint": 1})  # on its own connection: survives the rollback
            raise RuntimeError("after the insert")
        return then(input) if input == "chain" else None

    @saga.step
    def then(input: str, *, conn: psycopg.Connection[Any]) -> None:
        conn.execute(insert, (input + "-then",))

    saga.start("flaky", work, "flaky")
    saga.start("chain", work, "chain")
    saga.run(workers=1, drain=True)
    assert effects(db) == ["chain", "chain-then"]
    assert saga.get("flaky").status is Status.PENDING
    assert saga.get_state("flaky") == {"checkpoint": 1}
    db.make_due("flaky")
    saga.run(workers=1, drain=True)
    assert effects(db) == ["chain", "chain-then", "flaky"]
    assert tries == {"flaky": 2, "chain": 1}
    assert {saga.get(i).status for i in ("flaky", "chain")} == {Status.COMPLETE}


def test_conn_step_writes_roll_back_when_the_lease_is_lost(saga: Saga, db: Db) -> None:
    db.rows("CREATE TABLE {s}.effect (instance text)")
    ran = []

    @saga.step
    def work(input: str, *, conn: psycopg.Connection[Any]) -> str:
        conn.execute(sql.SQL("INSERT INTO {}.effect VALUES (%s)").format(
            sql.Identifier(db.schema)), (input,))
        db.steal("i")  # on another connection, before the outcome is written
        ran.append(input)
        return "outcome"

    saga.start("i", work, "i")
    saga.run(workers=1, drain=True)
    assert ran == ["i"]
    assert effects(db) == []
    row = saga.get("i")
    assert (row.status, row.runner_id, row.state) == (Status.RUNNING, "thief", None)


# -- step parameters and values ---------------------------------------------------------


def test_steps_get_the_leading_parameters_they_declare(
    saga: Saga, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="saga.steps")
    seen: list[object] = []

    @saga.step
    def p1(input: int) -> object:
        seen.append(input)
        return p2(input + 1)

    @saga.step
    def p2(input: int, state: object) -> object:
        seen.append((input, state))
        return p3(input + 1)

    @saga.step
    def p3(input: int, state: object, set_state: Callable[[object], None]) -> object:
        set_state({"k": "set"})
        seen.append((input, state))
        return p4(input + 1)

    @saga.step
    def p4(input: int, state: object, set_state: object,
           logger: logging.LoggerAdapter[logging.Logger]) -> None:
        seen.append((input, state, isinstance(logger, logging.LoggerAdapter)))
        logger.info("hello %s", input)

    saga.start("i", p1, 1, {"k": "start"})
    saga.run(workers=1, drain=True)
    assert seen == [1, (2, {"k": "start"}), (3, {"k": "start"}), (4, {"k": "set"}, True)]
    [record] = [r for r in caplog.records if r.getMessage() == "hello 4"]
    assert record.name == "saga.steps"
    extras = {k: getattr(record, k) for k in ("saga", "instance", "step", "attempt")}
    assert extras == {"saga": "test", "instance": "i", "step": "p4", "attempt": 1}
    assert saga.get("i").status is Status.COMPLETE


def test_dataclasses_round_trip_through_annotations(saga: Saga, db: Db) -> None:
    seen: list[tuple[object, object]] = []

    @saga.step
    def take(input: Order, state: Tally) -> object:
        seen.append((input, state))
        return settle(input, Tally(skus=[*state.skus, input.sku]), delay=FAR)

    @saga.step
    def settle(input: Order, state: Tally) -> Tally:
        seen.append((input, state))
        return Tally(skus=[*state.skus, "settled"])

    saga.start("i", take, Order("apple", 2), Tally([]))
    saga.run(workers=1, drain=True)
    assert saga.get_state("i") == Tally(["apple"])
    assert saga.get("i").input == Order("apple", 2)
    assert db.one("SELECT state FROM {s}.instance") == {"skus": ["apple"]}  # readable JSON
    db.make_due("i")
    saga.run(workers=1, drain=True)
    assert seen == [(Order("apple", 2), Tally([])), (Order("apple", 2), Tally(["apple"]))]
    assert saga.get_state("i") == Tally(["apple", "settled"])
    assert saga.get("i").status is Status.COMPLETE


def test_undecodable_row_errors_and_the_worker_goes_on(saga: Saga, db: Db) -> None:
    ran = []

    @saga.step
    def take(input: Order) -> None:
        ran.append(input)

    db.rows("INSERT INTO {s}.instance (name, instance_id, step, input, run_after) "
            "VALUES ('test', 'bad', 'take', '{{\"sku\": 1}}', now() - interval '1 hour')")
    saga.start("good", take, Order("pear", 1))
    stats = saga.run(workers=1, drain=True)
    bad = saga.get("bad")
    assert bad.status is Status.ERROR
    assert "cannot run this row: input of step 'take' does not decode" in bad.error
    assert "$.sku: expected str" in bad.error
    assert saga.get("good").status is Status.COMPLETE
    assert ran == [Order("pear", 1)]
    assert (stats.failed, stats.completed) == (1, 1)


def test_rows_of_unknown_steps_are_not_claimed(saga: Saga, db: Db) -> None:
    @saga.step
    def known(input: object) -> None: ...

    db.rows("INSERT INTO {s}.instance (name, instance_id, step, input) "
            "VALUES ('test', 'retired', 'gone', '1')")
    saga.start("known", known, 1)
    saga.run(workers=2, drain=True)
    row = saga.get("retired")
    assert (row.status, row.attempts, row.runner_id, row.error) == (Status.PENDING, 0, None, None)
    assert saga.get("known").status is Status.COMPLETE


# -- wake-ups ---------------------------------------------------------------------------


def test_start_wakes_an_idle_worker_through_notify(saga: Saga, db: Db) -> None:
    @saga.step
    def work(input: object) -> None: ...

    with running(saga, db, workers=1, poll_interval=30.0):
        wait_until(db.listening)
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
        events.append(("step finished", holds_within(beats_after_stop, 10.0)))
        return "done"

    saga.start("i", work, 1)
    live = LiveRun(saga, db, workers=2, heartbeat_timeout=2.0)
    try:
        assert started.wait(10.0)
        saga.stop()
        stopped_at.append(db.one("SELECT now()"))
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
    assert row.run_after <= db.one("SELECT now()")
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
    runs = []

    @quick.step
    def nothing(input: object) -> None: ...

    @slow.step
    def long(input: object) -> str:
        runs.append(slow.get("i").attempts)
        if len(runs) == 1:  # look as if the step had run for a minute already
            backdated = db.one("UPDATE {s}.instance SET updated_at = now() - interval '1 min'"
                               " WHERE instance_id = 'i' RETURNING now()")
            holds_within(lambda: db.one(  # heartbeats (so, stale-row checks) after that
                "SELECT count(*) FROM {s}.runner "
                "WHERE heartbeat_at > %s + interval '300 milliseconds'", backdated), 10.0)
        return "done once"

    slow.start("i", long, 1)
    Runner([quick, slow], workers=2, heartbeat_timeout=0.4).run(drain=True)
    assert runs == [1]
    row = slow.get("i")
    assert (row.status, row.state, row.attempts) == (Status.COMPLETE, "done once", 1)


def test_two_runners_never_run_a_step_twice(make_saga: Callable[..., Saga], db: Db) -> None:
    counts, runners, lock = Counter[tuple[str, str]](), Counter[str](), threading.Lock()

    def define(s: Saga) -> Any:
        def count(name: str, input: str, logger: logging.LoggerAdapter[Any]) -> None:
            with lock:
                counts[input, name] += 1
                runners[logger.extra["runner_id"]] += 1  # type: ignore[index]

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
        wait_until(lambda: db.listening() == 2)
        for n in range(200):
            a.start(f"i{n}", one, f"i{n}")
        wait_until(lambda: db.one("SELECT count(*) FROM {s}.instance WHERE status = 2") == 200,
                   timeout=60.0)
    assert len(counts) == 600
    assert set(counts.values()) == {1}
    assert db.rows("SELECT status, attempts, count(*) FROM {s}.instance "
                   "GROUP BY 1, 2") == [(Status.COMPLETE, 1, 200)]
    assert len(runners) == 2  # both runners took part
