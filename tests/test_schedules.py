"""Schedules on a real server: declaration errors, ticks made once, catch-up after a
downtime, overlap, pause and resume, changed and removed schedules, rolling deploys,
and the drain. The database clock is real; a downtime is made by moving `next_tick`
back, never by a fake clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import psycopg
import pytest

from saga import Saga, SagaNotFound, Status
from saga.schedules import Ticker, tick_id
from tests.helpers import Db, wait_until

UTC = timezone.utc
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)


@dataclass
class Report:
    day: str


def ticker(*sagas: Saga, **options: Any) -> Ticker:
    """The ticker a runner of *sagas* would have (they share one schema)."""
    return Ticker(sagas[0].pool, sagas[0].schema,
                  {s.name: list(s.schedules.values()) for s in sagas}, **options)


def tick(t: Ticker) -> int:
    """Declare, then make what is due, on a connection of the ticker's pool."""
    return t.run_once()


def ticks(db: Db, saga: str = "test") -> list[str]:
    return [i for (i,) in db.rows(
        "SELECT instance_id FROM {s}.instance WHERE name = %s ORDER BY instance_id", saga)]


def schedule_row(db: Db, name: str, saga: str = "test") -> dict[str, Any]:
    row = db.record("SELECT * FROM {s}.schedule WHERE saga = %s AND name = %s", saga, name)
    assert row is not None
    return row


def move_back(db: Db, name: str, by: timedelta) -> None:
    """A downtime of *by*: the schedule's next tick lies that far in the past."""
    assert db.execute("UPDATE {s}.schedule SET next_tick = next_tick - %s WHERE name = %s",
                      by, name) == 1


@pytest.fixture
def hourly(make_saga: Callable[..., Saga]) -> Saga:
    s = make_saga()

    @s.step
    def report(input: Report) -> None:
        return None

    return s


# -- declaration ---------------------------------------------------------------------------


def test_bad_declarations_fail_at_once_naming_the_schedule(hourly: Saga) -> None:
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"cron": "0 25 * * *"}, ValueError, "invalid cron expression '0 25 * * *'"),
        ({"cron": "0 2 * * *", "tz": "Europe/Berlyn"}, ValueError, "unknown time zone"),
        ({"every": timedelta(0)}, ValueError, "positive interval"),
        ({"every": HOUR, "input": 42}, TypeError, "input: input does not fit step 'report'"),
        ({"every": HOUR, "input": lambda tick: tick.date()}, TypeError, "input"),
        ({"every": HOUR, "catch_up": "some"}, ValueError, "catch_up must be one of"),
        ({"every": HOUR, "overlap": "queue"}, ValueError, "overlap must be one of"),
        ({"every": HOUR, "max_lateness": -SECOND}, ValueError, "max_lateness"),
        ({"every": HOUR, "catch_up_limit": 0}, ValueError, "catch_up_limit"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=r"schedule 'nightly' of saga 'test': ") as e:
            hourly.schedule("nightly", "report", **options)
        assert message in str(e.value), options
    with pytest.raises(ValueError, match="schedule 'nightly' of saga 'test': unknown step"):
        hourly.schedule("nightly", "nope", every=HOUR)
    hourly.schedule("nightly", "report", every=HOUR, input=Report("x"))
    with pytest.raises(ValueError, match="already has a schedule named 'nightly'"):
        hourly.schedule("nightly", "report", every=HOUR, input=Report("x"))
    with pytest.raises(ValueError, match="without '@'"):
        hourly.schedule("a@b", "report", every=HOUR, input=Report("x"))
    assert list(hourly.schedules) == ["nightly"]


# -- ticking -------------------------------------------------------------------------------


def test_a_tick_is_one_instance_with_a_deterministic_id(hourly: Saga, db: Db) -> None:
    hourly.schedule("often", "report", every=SECOND,
                    input=lambda t: Report(t.date().isoformat()))
    t = ticker(hourly)
    assert tick(t) == 0  # a new schedule: its first tick is computed from now
    first = schedule_row(db, "often")["next_tick"]
    assert first > db.now() - SECOND
    move_back(db, "often", SECOND)  # the first tick was at most a second ahead: due now
    assert tick(t) == 1
    [made] = ticks(db)
    row = schedule_row(db, "often")
    assert made == tick_id("often", row["last_tick"])
    assert made.startswith("often@")
    assert made.endswith("Z")
    assert row["next_tick"] == row["last_tick"] + SECOND
    assert (row["last_instance"], row["ticks"]) == (made, 1)
    instance = hourly.get(made)
    assert (instance.step, instance.status) == ("report", Status.PENDING)
    assert instance.input == Report(row["last_tick"].date().isoformat())
    assert tick(t) in (0, 1)  # at most the next second's tick
    assert len(set(ticks(db))) == len(ticks(db))


@pytest.mark.parametrize(("catch_up", "expected"), [("all", 4), ("latest", 1), ("skip", 0)])
def test_after_a_downtime_each_catch_up_policy_does_what_it_says(
        hourly: Saga, db: Db, catch_up: str, expected: int) -> None:
    hourly.schedule("hourly", "report", every=HOUR, input=Report("d"), catch_up=catch_up,
                    max_lateness=SECOND)
    t = ticker(hourly)
    tick(t)  # the first tick: the next full hour
    move_back(db, "hourly", 4 * HOUR)  # no worker for four hours
    now = db.now()
    if catch_up == "skip" and now - now.replace(minute=0, second=0, microsecond=0) < 3 * SECOND:
        pytest.skip("the hour has just begun: its tick is on time, even for skip")
    assert tick(t) == expected
    row = schedule_row(db, "hourly")
    assert (row["ticks"], row["skipped"]) == (expected, 4 - expected)
    assert row["next_tick"] > now
    hours = sorted(int(i.split("T")[1][:2]) for i in ticks(db))
    assert len(hours) == expected
    if catch_up == "latest":  # the most recent of the missed hours
        assert hours == [now.astimezone(UTC).hour]
    assert tick(t) == 0


def test_all_is_bounded_by_its_limit(hourly: Saga, db: Db) -> None:
    hourly.schedule("hourly", "report", every=HOUR, input=Report("d"), catch_up="all",
                    catch_up_limit=3)
    t = ticker(hourly)
    tick(t)
    move_back(db, "hourly", 10 * HOUR)
    assert tick(t) == 3
    assert schedule_row(db, "hourly")["skipped"] == 7


def test_overlap_skip_waits_for_the_previous_ticks_saga(
        hourly: Saga, db: Db, caplog: pytest.LogCaptureFixture) -> None:
    hourly.schedule("hourly", "report", every=HOUR, input=Report("d"), overlap="skip")
    t = ticker(hourly)
    tick(t)
    move_back(db, "hourly", HOUR)
    assert tick(t) == 1  # the previous one (none) is done
    [first] = ticks(db)
    move_back(db, "hourly", HOUR)
    assert tick(t) == 0  # the first tick's saga is still PENDING
    assert schedule_row(db, "hourly")["skipped"] == 1
    hourly.run(workers=1, drain=True)  # finishes it (and ticks: nothing is due)
    assert hourly.get(first).status == Status.COMPLETE
    move_back(db, "hourly", HOUR)
    caplog.clear()
    tick(t)  # no longer blocked: the hour's tick is made again (its id exists: one row)
    assert "1 tick(s) existed already" in caplog.text
    row = schedule_row(db, "hourly")
    assert (row["ticks"], row["skipped"]) == (1, 1)
    assert ticks(db) == [first]


def test_pause_and_resume_from_the_api(hourly: Saga, db: Db) -> None:
    hourly.schedule("hourly", "report", every=HOUR, input=Report("d"))
    hourly.pause_schedule("hourly")  # before any worker recorded it
    t = ticker(hourly)
    tick(t)
    assert schedule_row(db, "hourly")["paused"] is True
    db.execute("UPDATE {s}.schedule SET next_tick = now() - interval '1 hour'")
    assert tick(t) == 0
    hourly.resume_schedule("hourly")
    row = schedule_row(db, "hourly")
    assert (row["paused"], row["next_tick"]) == (False, None)  # recomputed from now
    assert tick(t) == 0  # the ticks that fell while paused are not made
    assert schedule_row(db, "hourly")["next_tick"] > db.now()
    with pytest.raises(SagaNotFound, match="no schedule 'nope'"):
        hourly.pause_schedule("nope")


def test_a_changed_timing_takes_effect_at_once(make_saga: Callable[..., Saga], db: Db) -> None:
    old, new = make_saga(), make_saga()
    for s, every in ((old, timedelta(days=7)), (new, SECOND)):
        s.step(lambda_free_step)
        s.schedule("job", "lambda_free_step", every=every)
    tick(ticker(old))
    assert schedule_row(db, "job")["next_tick"] > db.now() + timedelta(hours=1)
    tick(ticker(new))  # the new deploy: the next tick follows the new timing
    row = schedule_row(db, "job")
    assert row["expression"] == "every 1s"
    assert row["next_tick"] <= db.now() + 2 * SECOND


def lambda_free_step(input: object) -> None:
    return None


def test_a_schedule_removed_from_the_code_is_retired_and_reported(
        make_saga: Callable[..., Saga], db: Db) -> None:
    before, after = make_saga(), make_saga()
    for s in (before, after):
        s.step(lambda_free_step)
        s.schedule("kept", "lambda_free_step", every=HOUR)
    before.schedule("dropped", "lambda_free_step", every=SECOND)
    tick(ticker(before))
    tick(ticker(after))  # the deploy without "dropped"
    assert schedule_row(db, "dropped")["retired_at"] is not None
    assert schedule_row(db, "kept")["retired_at"] is None
    db.execute("UPDATE {s}.schedule SET next_tick = now() - interval '1 s'")
    t = ticker(before)  # the old code still runs somewhere: it leaves a retired row alone
    with before.pool.connection() as conn:  # no declare: the old code ticks only
        t.tick(conn)
    assert not [i for i in ticks(db) if i.startswith("dropped@")]


def test_two_deployments_that_disagree_never_duplicate_a_tick(
        make_saga: Callable[..., Saga], db: Db) -> None:
    """Mid rolling deploy: the old code says every 2 s, the new one every 1 s, and both
    tick as fast as they can; halfway, an old process restarts (and declares again)."""
    old, new = make_saga(), make_saga()
    for s, every in ((old, 2 * SECOND), (new, SECOND)):
        s.step(lambda_free_step)
        s.schedule("job", "lambda_free_step", every=every, catch_up="all")
    tickers = [ticker(s) for s in (old, new, old, new)]
    for t in tickers:
        t.run_once()  # each process declares when it starts: the new one last
    stop = threading.Event()

    def serve(t: Ticker) -> None:
        with t.pool.connection() as conn:
            while not stop.is_set():
                t.tick(conn)
                stop.wait(0.01)

    threads = [threading.Thread(target=serve, args=(t,)) for t in tickers]
    for th in threads:
        th.start()
    stop.wait(2.5)
    ticker(old).run_once()  # an old process restarts
    stop.wait(2.5)
    stop.set()
    for th in threads:
        th.join(10)
    found = ticks(db)
    made = sum(t.made for t in tickers)
    assert made == len(found) == schedule_row(db, "job")["ticks"]  # none made twice
    moments = sorted(datetime.fromisoformat(i.split("@")[1].replace("Z", "+00:00"))
                     for i in found)
    assert len(moments) >= 3
    assert all(b - a >= SECOND for a, b in pairwise(moments))
    assert tickers[1].made + tickers[3].made > 0  # the new code ruled first,
    assert tickers[0].made + tickers[2].made > 0  # then the restarted old one


def test_a_drain_makes_the_due_ticks_then_runs_them(hourly: Saga, db: Db) -> None:
    hourly.schedule("hourly", "report", every=HOUR, input=Report("d"))
    stats = hourly.run(workers=1, drain=True)  # records the schedule, nothing is due
    assert stats.steps == 0
    move_back(db, "hourly", 2 * HOUR)
    stats = hourly.run(workers=1, drain=True)
    assert (stats.steps, stats.completed) == (1, 1)
    [made] = ticks(db)
    assert hourly.get(made).status == Status.COMPLETE


def test_a_worker_ticks_in_its_service_thread(hourly: Saga, db: Db) -> None:
    hourly.schedule("often", "report", every=SECOND, input=Report("d"), catch_up="all")
    runner = threading.Thread(target=hourly.run, kwargs={"workers": 1})
    runner.start()
    try:
        wait_until(lambda: db.one("SELECT count(*) FROM {s}.instance WHERE status = %s",
                                  int(Status.COMPLETE)) >= 2, timeout=15)
    finally:
        hourly.stop()
        runner.join(30)


def test_the_table_is_missing_until_migrated(dsn: str, schema: str) -> None:
    with Saga("m", dsn, schema=schema) as s:
        @s.step
        def x(input: object) -> None:
            return None

        s.schedule("x", x, every=HOUR)
        t = ticker(s)
        with pytest.raises(psycopg.errors.UndefinedTable):
            t.run_once()
