"""Runner liveness: expiry by each runner's own timeout, reaping only after steady beats,
fencing a runner whose heartbeat fails, and a drain that recovers what dead runners left."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from saga import Saga, Status
from saga.store import Store
from tests.helpers import Db, running, seconds, wait_until


def add_dead_runner(db: Db, runner_id: str, *, expired_ago: float) -> None:
    db.execute("INSERT INTO {s}.runner (id, hostname, pid, serves, heartbeat_at, expires_at)"
               " VALUES (%s, 'gone', 1, '{{}}', now() - interval '1 hour',"
               " now() - make_interval(secs => %s))", runner_id, expired_ago)


def test_a_runner_expires_by_its_own_timeout(saga: Saga, db: Db) -> None:
    @saga.step
    def idle(input: object) -> None: ...

    with running(saga, db, heartbeat_timeout=7.0):
        def fresh() -> Any:
            row = db.record("SELECT heartbeat_at, expires_at FROM {s}.runner")
            return row if row and seconds(row["expires_at"], row["heartbeat_at"]) else None

        row = wait_until(fresh)
        assert seconds(row["expires_at"], row["heartbeat_at"]) == pytest.approx(7.0)


def test_a_short_timeout_runner_does_not_reap_a_long_timeout_one(
    make_saga: Any, db: Db
) -> None:
    patient, hasty = make_saga("patient"), make_saga("hasty")

    @patient.step
    def p(input: object) -> None: ...

    @hasty.step
    def h(input: object) -> None: ...

    # The patient runner beats every second: silent far longer than the hasty one's
    # timeout, yet alive by its own.
    with running(patient, db, heartbeat_timeout=15.0):
        [patient_id] = db.runner_ids()
        with running(hasty, db, heartbeat_timeout=0.4):
            time.sleep(2.0)  # several of the hasty runner's reaping rounds
            assert patient_id in db.runner_ids()


def test_reaping_waits_for_a_timeout_of_steady_beats(saga: Saga, db: Db) -> None:
    """After an outage every runner has expired: the first back must not reap the others
    before they had a chance to beat again."""

    @saga.step
    def idle(input: object) -> None: ...

    add_dead_runner(db, "expired", expired_ago=0.1)
    started = time.monotonic()
    with running(saga, db, heartbeat_timeout=1.5):
        wait_until(lambda: "expired" not in db.runner_ids(), timeout=10)
        waited = time.monotonic() - started
    assert waited >= 1.5


def test_rows_of_a_runner_that_is_gone_are_recovered_at_once(saga: Saga, db: Db) -> None:
    @saga.step
    def work(input: object) -> str:
        return "done"

    saga.start("orphan", work)
    db.execute("UPDATE {s}.instance SET status = 1, runner_id = 'vanished', attempts = 1")
    with running(saga, db, heartbeat_timeout=30.0):
        # well within the 30 s timeout: the wait's bound is the check
        wait_until(lambda: saga.get("orphan").status is Status.COMPLETE, timeout=10)
    assert saga.get("orphan").attempts == 2  # recovered and claimed again


def test_a_drain_recovers_rows_of_dead_runners_first(saga: Saga, db: Db) -> None:
    @saga.step
    def work(input: object) -> str:
        return "done"

    saga.start("left", work)
    add_dead_runner(db, "dead", expired_ago=60)
    db.execute("UPDATE {s}.instance SET status = 1, runner_id = 'dead', attempts = 1")

    stats = saga.run(workers=1, drain=True)

    assert stats.completed == 1
    assert saga.get("left").status is Status.COMPLETE
    assert db.runner_ids() == set()


def test_a_runner_whose_heartbeat_fails_stops_claiming(
    saga: Saga, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the heartbeat hangs (say, on a black-holed connection). Once half
    the timeout has passed without a beat, others may soon reap this runner, so it must
    not claim: whatever it claimed would be taken back and run twice."""
    ran = threading.Event()

    @saga.step
    def work(input: object) -> None:
        ran.set()

    hang = threading.Event()
    original = Store.heartbeat

    def stuck(self: Store, *args: Any) -> bool:
        hang.wait(30)
        return original(self, *args)

    monkeypatch.setattr(Store, "heartbeat", stuck)
    try:
        with running(saga, db, heartbeat_timeout=1.0, poll_interval=0.1):
            time.sleep(0.8)  # past half the timeout without a beat
            saga.start("x", work)
            assert not ran.wait(1.0)
            assert saga.get("x").status is Status.PENDING
            hang.set()  # beats again: claims resume
            assert ran.wait(10)
    finally:
        hang.set()
