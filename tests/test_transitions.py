"""State transitions a worker makes: continuations, SagaError, retries, max attempts, reaper."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from saga import ConcurrencyException, Saga, SagaError, Status
from tests.helpers import FAR, Db, running, seconds, wait_until


@pytest.fixture
def claims(db: Db, saga: Saga) -> Callable[[], int]:
    """Count claims (PENDING -> RUNNING) with a trigger: the database's own account."""
    db.rows("CREATE TABLE {s}.claims (id bigint)")
    db.rows("CREATE FUNCTION {s}.count_claim() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN INSERT INTO {db.schema}.claims VALUES (NEW.id); RETURN NEW; END $$")
    db.rows("CREATE TRIGGER count_claim AFTER UPDATE ON {s}.instance FOR EACH ROW "
            "WHEN (OLD.status = 0 AND NEW.status = 1) EXECUTE FUNCTION {s}.count_claim()")
    return lambda: int(db.one("SELECT count(*) FROM {s}.claims"))


# -- the state machine ------------------------------------------------------------------


def test_start_makes_a_pending_instance(saga: Saga, db: Db) -> None:
    @saga.step
    def work(input: object) -> None: ...

    saga.start("i", work, {"n": 1}, {"s": 0})
    row = saga.get("i")
    assert (row.status, row.step, row.input, row.state) == (Status.PENDING, "work", {"n": 1},
                                                            {"s": 0})
    assert (row.attempts, row.error, row.runner_id) == (0, None, None)
    assert row.run_after <= db.now()


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
    now = db.now()
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
    with pytest.raises(ConcurrencyException, match="earlier call"):  # "new" must not be lost
        saga.call("i", other, "newer")
    db.make_due("i")
    saga.run(workers=1, drain=True)
    assert ran == ["new"]
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

    db.rows("INSERT INTO {s}.runner (id, hostname, pid, serves, heartbeat_at, expires_at) "
            "VALUES ('dead', 'gone', 1, '{{}}', now() - interval '1 hour', "
            "now() - interval '50 minutes')")
    real.start("i", work, 1)
    db.rows("UPDATE {s}.instance SET status = 1, runner_id = 'dead', attempts = 1")
    with running(observer, db, heartbeat_timeout=1.0):
        row = wait_until(lambda: (r := real.get("i")).status is Status.PENDING and r)
        assert "dead" not in db.runner_ids()
    assert (row.runner_id, row.attempts, row.step) == (None, 1, "work")
    assert row.error == "runner dead stopped during step work"
    assert row.run_after <= db.now()

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
