"""Claiming several due rows at once (`claim_batch`): the rows of a batch go to whichever
worker thread is free, and a stop hands back those that never started."""

from __future__ import annotations

import threading

from saga import Saga, Status
from tests.helpers import FAR, Db, running, wait_until


def test_a_batch_is_shared_by_the_idle_threads(saga: Saga, db: Db) -> None:
    both_in = threading.Barrier(2, timeout=10)
    threads: set[str] = set()

    @saga.step
    def work(input: int) -> None:
        threads.add(threading.current_thread().name)
        if input < 2:
            both_in.wait()  # the first two rows must run at the same time, on two threads

    saga.start_many(work, {f"i{n}": n for n in range(6)})
    with running(saga, db, workers=2, claim_batch=6, poll_interval=FAR) as live:
        wait_until(lambda: db.statuses() == {Status.COMPLETE: 6})
    assert len(threads) == 2
    assert live.join().completed == 6


def test_a_stop_hands_back_the_rows_of_a_batch_that_never_started(saga: Saga, db: Db) -> None:
    entered, release = threading.Event(), threading.Event()

    @saga.step
    def work(input: int) -> None:
        entered.set()
        release.wait(10)

    saga.start_many(work, {f"i{n}": n for n in range(5)})
    with running(saga, db, workers=1, claim_batch=5, poll_interval=FAR):
        assert entered.wait(10)
        assert db.statuses() == {Status.RUNNING: 5}  # one runs, four wait in the buffer
        saga.stop()
        release.set()
    assert db.statuses() == {Status.COMPLETE: 1, Status.PENDING: 4}
    pending = db.rows("SELECT attempts, runner_id FROM {s}.instance WHERE status = 0")
    assert set(pending) == {(0, None)}  # the claim did not count


def test_a_row_left_in_the_buffer_too_long_is_handed_back(saga: Saga, db: Db) -> None:
    release = threading.Event()
    ran: list[int] = []

    @saga.step
    def work(input: int) -> None:
        ran.append(input)
        if input == 0:
            release.wait(10)  # longer than half the heartbeat timeout

    db.rows("CREATE TABLE {s}.handed_back (instance_id text)")
    db.rows("CREATE FUNCTION {s}.hand_back() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN INSERT INTO {db.schema}.handed_back VALUES (NEW.instance_id); "
            "RETURN NEW; END $$")
    db.rows("CREATE TRIGGER hand_back AFTER UPDATE ON {s}.instance FOR EACH ROW "
            "WHEN (OLD.status = 1 AND NEW.status = 0) EXECUTE FUNCTION {s}.hand_back()")
    saga.start("i0", work, 0)
    saga.start("i1", work, 1, delay=0.3)  # due later than i0, so claimed second
    wait_until(lambda: db.one("SELECT count(*) FROM {s}.instance WHERE run_after <= now()")
               == 2)
    with running(saga, db, workers=1, claim_batch=2, heartbeat_timeout=2.0,
                 poll_interval=FAR):
        wait_until(lambda: ran == [0])
        threading.Timer(1.5, release.set).start()
        wait_until(lambda: db.statuses() == {Status.COMPLETE: 2}, timeout=15)
    # i1 waited out i0's step in the buffer, went back to PENDING, and ran after.
    assert ran == [0, 1]
    assert db.rows("SELECT instance_id FROM {s}.handed_back") == [("i1",)]
    assert db.row("i1")["attempts"] == 1  # the claim that was handed back did not count
