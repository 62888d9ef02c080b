"""Steering instances from outside: start_many, cancel, retry and wait."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from saga import ConcurrencyException, Saga, SagaError, SagaNotFound, Status
from tests.helpers import FAR, Db, running, wait_until


@dataclass
class Order:
    sku: str
    qty: int


# -- start_many ---------------------------------------------------------------------------


def test_start_many_creates_each_instance_with_its_input(saga: Saga, db: Db) -> None:
    @saga.step
    def reserve(input: Order) -> None: ...

    assert saga.start_many(reserve, {"a": Order("x", 1), "b": Order("y", 2)},
                           state={"n": 0}) == []
    a, b = saga.get("a"), saga.get("b")
    assert (a.status, a.step, a.input, a.state) == (Status.PENDING, "reserve", Order("x", 1),
                                                    {"n": 0})
    assert b.input == Order("y", 2)
    assert saga.start_many(reserve, []) == []
    assert db.one("SELECT count(*) FROM {s}.instance") == 2


def test_start_many_reports_duplicates_per_instance(saga: Saga, db: Db) -> None:
    @saga.step
    def reserve(input: int) -> None: ...

    saga.start("old", reserve, 0)
    pairs = [("new1", 1), ("old", 2), ("new2", 3), ("new1", 4)]
    assert saga.start_many(reserve, pairs) == ["old", "new1"]
    assert saga.get("old").input == 0  # the existing instance is left as it was
    assert saga.get("new1").input == 1  # the first of two occurrences wins
    assert db.one("SELECT count(*) FROM {s}.instance") == 3


def test_start_many_spans_several_statements_in_one_transaction(
    saga: Saga, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    @saga.step
    def reserve(input: int) -> None: ...

    monkeypatch.setattr("saga.core.START_MANY_CHUNK", 3)
    assert saga.start_many(reserve, ((f"i{n}", n) for n in range(10))) == []
    assert db.one("SELECT count(DISTINCT created_at) FROM {s}.instance") == 4  # 4 statements
    assert db.one("SELECT count(DISTINCT xmin::text) FROM {s}.instance") == 1  # 1 transaction


def test_start_many_checks_every_item_before_writing(saga: Saga, db: Db) -> None:
    @saga.step
    def reserve(input: Order) -> None: ...

    with pytest.raises(TypeError, match=r"items\[1\] \(instance 'b'\).*Order"):
        saga.start_many(reserve, {"a": Order("x", 1), "b": {"sku": "y"}})
    with pytest.raises(ValueError, match=r"items\[0\]: instance must be 1 to 512"):
        saga.start_many(reserve, [("", Order("x", 1))])
    with pytest.raises(TypeError, match=r"items\[0\] must be an \(instance, input\) pair"):
        saga.start_many(reserve, ["abc"])  # type: ignore[list-item]
    assert db.one("SELECT count(*) FROM {s}.instance") == 0


def test_start_many_joins_the_callers_transaction(saga: Saga, dsn: str, db: Db) -> None:
    @saga.step
    def reserve(input: int) -> None: ...

    with psycopg.connect(dsn) as conn:
        saga.start_many(reserve, {"a": 1, "b": 2}, conn=conn)
        conn.rollback()
    assert db.one("SELECT count(*) FROM {s}.instance") == 0


def test_start_many_wakes_an_idle_worker(saga: Saga, db: Db) -> None:
    ran: list[int] = []

    @saga.step
    def work(input: int) -> None:
        ran.append(input)

    with running(saga, db, poll_interval=FAR):
        saga.start_many(work, {f"i{n}": n for n in range(50)})
        wait_until(lambda: len(ran) == 50)
    assert sorted(ran) == list(range(50))


# -- call: never silently replaced ---------------------------------------------------------


def test_a_call_waits_for_the_previous_calls_step_to_finish(saga: Saga, db: Db) -> None:
    seen: list[str] = []

    @saga.step
    def event(input: str) -> object:
        seen.append(input)
        return waiting(None, delay=3600)

    @saga.step
    def waiting(input: object) -> None: ...

    saga.start("i", waiting, None, delay=3600)
    saga.call("i", event, "first")
    with pytest.raises(ConcurrencyException, match="earlier call"):
        saga.call("i", event, "second")
    saga.run(workers=1, drain=True)  # the first call's step runs and waits again
    saga.call("i", event, "second")
    saga.run(workers=1, drain=True)
    assert seen == ["first", "second"]


def test_a_failing_called_step_keeps_its_call_until_it_succeeds(saga: Saga) -> None:
    @saga.step
    def event(input: str) -> None:
        raise RuntimeError("not yet")

    @saga.step
    def waiting(input: object) -> None: ...

    saga.start("i", waiting, None, delay=3600)
    saga.call("i", event, "first")
    saga.run(workers=1, drain=True)  # fails, and is retried later with the same input
    row = saga.get("i")
    assert (row.status, row.step, row.input, row.attempts) == (Status.PENDING, "event",
                                                               "first", 1)
    with pytest.raises(ConcurrencyException, match="earlier call"):
        saga.call("i", event, "second")


# -- cancel -------------------------------------------------------------------------------


def test_cancel_a_pending_instance(saga: Saga) -> None:
    @saga.step
    def work(input: object) -> None: ...

    saga.start("i", work, 1, delay=3600)
    saga.cancel("i")
    row = saga.get("i")
    assert (row.status, row.done, row.cancel_requested) == (Status.CANCELLED, True, False)
    with pytest.raises(ConcurrencyException, match="CANCELLED"):
        saga.cancel("i")
    with pytest.raises(ConcurrencyException, match="CANCELLED, not PENDING"):
        saga.call("i", work, 2)
    assert saga.run(workers=1, drain=True).steps == 0  # nothing left to run


def test_cancel_unknown_or_finished(saga: Saga) -> None:
    @saga.step
    def work(input: object) -> None: ...

    with pytest.raises(SagaNotFound):
        saga.cancel("ghost")
    saga.start("i", work, 1)
    saga.run(workers=1, drain=True)
    with pytest.raises(ConcurrencyException, match="COMPLETE: it cannot be cancelled"):
        saga.cancel("i")
    assert saga.get("i").status == Status.COMPLETE


def test_cancel_in_the_callers_transaction(saga: Saga, dsn: str) -> None:
    @saga.step
    def work(input: object) -> None: ...

    saga.start("i", work, 1, delay=3600)
    with psycopg.connect(dsn) as conn:
        saga.cancel("i", conn=conn)
        conn.rollback()
    assert saga.get("i").status == Status.PENDING


def blocking_saga(saga: Saga, last: bool = False, fails: bool = False) -> tuple[
        threading.Event, threading.Event]:
    """Register `first`, which waits for a release, then goes on with `second` (or ends
    there if *last*, or raises if *fails*). Return (entered, release)."""
    entered, release = threading.Event(), threading.Event()

    @saga.step
    def second(input: object) -> None:
        raise AssertionError("a cancelled instance must not go on")

    @saga.step
    def first(input: object) -> object:
        entered.set()
        release.wait(10)
        if fails:
            raise RuntimeError("transient")
        return None if last else second(input, delay=input)  # the input is the delay

    return entered, release


@pytest.mark.parametrize("delay", [0, 60])
def test_cancel_a_running_instance_at_the_step_boundary(saga: Saga, db: Db, delay: int) -> None:
    entered, release = blocking_saga(saga)
    saga.start("i", "first", delay)  # 0 runs on at once; 60 would wait as PENDING
    with running(saga, db):
        assert entered.wait(10)
        saga.cancel("i")
        row = saga.get("i")
        assert (row.status, row.cancel_requested) == (Status.RUNNING, True)
        release.set()
        done = saga.wait("i", timeout=10)
    assert done.status == Status.CANCELLED
    assert (done.step, done.runner_id) == ("second", None)  # what would have run next


def test_cancel_a_running_step_that_fails_ends_cancelled_not_retried(saga: Saga,
                                                                      db: Db) -> None:
    entered, release = blocking_saga(saga, fails=True)
    saga.start("i", "first", 0)
    with running(saga, db):
        assert entered.wait(10)
        saga.cancel("i")
        release.set()
        done = saga.wait("i", timeout=10)
    assert (done.status, done.step) == (Status.CANCELLED, "first")
    assert "transient" in (done.error or "")


def test_a_last_step_completes_despite_a_late_cancel(saga: Saga, db: Db) -> None:
    entered, release = blocking_saga(saga, last=True)
    saga.start("i", "first", 0)
    with running(saga, db):
        assert entered.wait(10)
        saga.cancel("i")
        release.set()
        assert saga.wait("i", timeout=10).status == Status.COMPLETE


def test_a_cancelled_row_whose_runner_dies_ends_cancelled(saga: Saga, db: Db) -> None:
    @saga.step
    def work(input: object) -> None: ...

    saga.start("i", work, 1)
    db.set_status("i", Status.RUNNING, runner_id="gone")  # a runner that left no row
    saga.cancel("i")
    saga.run(workers=1, drain=True)  # a drain reaps first
    assert saga.get("i").status == Status.CANCELLED


# -- retry --------------------------------------------------------------------------------


def test_retry_replays_an_error_instance(saga: Saga) -> None:
    fixed = threading.Event()

    @saga.step
    def work(input: int) -> int:
        if not fixed.is_set():
            raise SagaError("the gateway refused")
        return input * 2

    saga.start("i", work, 21, state={"s": 1})
    saga.run(workers=1, drain=True)
    assert saga.get("i").status == Status.ERROR
    fixed.set()
    saga.retry("i")
    row = saga.get("i")
    assert (row.status, row.attempts, row.error, row.step, row.input) == (
        Status.PENDING, 0, None, "work", 21)
    saga.run(workers=1, drain=True)
    assert (saga.get("i").status, saga.get_state("i")) == (Status.COMPLETE, 42)


def test_retry_refuses_what_is_not_in_error(saga: Saga) -> None:
    @saga.step
    def work(input: object) -> None: ...

    with pytest.raises(SagaNotFound):
        saga.retry("ghost")
    saga.start("i", work, 1, delay=3600)
    with pytest.raises(ConcurrencyException, match="PENDING: it cannot be retried"):
        saga.retry("i")


# -- wait ---------------------------------------------------------------------------------


def test_wait_returns_at_once_for_a_finished_instance(saga: Saga) -> None:
    @saga.step
    def work(input: object) -> str:
        return "done"

    saga.start("i", work, 1)
    saga.run(workers=1, drain=True)
    assert saga.wait("i", timeout=0).state == "done"


def test_wait_is_woken_by_the_notify_not_by_polling(
    saga: Saga, dsn: str, schema: str, db: Db
) -> None:
    go = threading.Event()
    finished_at: list[float] = []

    @saga.step
    def work(input: object) -> str:
        go.wait(10)
        finished_at.append(time.monotonic())
        return "done"

    # The waiter has a pool of one connection, to see it go back not listening.
    pool: ConnectionPool[Any] = ConnectionPool(dsn, min_size=1, max_size=1, open=True)
    waiter = Saga(saga.name, pool=pool, schema=schema)
    saga.start("i", work, 1)
    with running(saga, db):
        threading.Timer(0.5, go.set).start()
        row = waiter.wait("i", timeout=30)
        woke = time.monotonic()
    assert (row.status, row.state) == (Status.COMPLETE, "done")
    # Without a NOTIFY the row is re-read only every 5 s: this is far quicker.
    assert woke - finished_at[0] < 1.0
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)
    pool.close()


def test_wait_times_out_and_rejects_bad_arguments(saga: Saga) -> None:
    @saga.step
    def work(input: object) -> None: ...

    saga.start("i", work, 1, delay=3600)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="still PENDING"):
        saga.wait("i", timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 3
    with pytest.raises(SagaNotFound):
        saga.wait("ghost", timeout=1)
    with pytest.raises(ValueError, match="timeout must be"):
        saga.wait("i", timeout=-1)


def test_wait_sees_a_cancel(saga: Saga) -> None:
    @saga.step
    def work(input: object) -> None: ...

    saga.start("i", work, 1, delay=3600)
    threading.Timer(0.2, saga.cancel, args=("i",)).start()
    assert saga.wait("i", timeout=10).status == Status.CANCELLED
