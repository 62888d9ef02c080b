"""`python -m saga schedules|pause|resume`, and the overdue schedules in `stats`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from saga import Saga
from saga.schedules import Ticker
from tests.admin_support import Result, admin, run_cli
from tests.helpers import Db

__all__ = ["admin"]  # a fixture: used, by pytest


def serve(*sagas: Saga) -> None:
    """What a worker of *sagas* does first: declare their schedules, make what is due."""
    Ticker(sagas[0].pool, sagas[0].schema,
           {s.name: list(s.schedules.values()) for s in sagas}).run_once()


def nightly(make_saga: Callable[..., Saga], name: str = "billing") -> Saga:
    s = make_saga(name)

    @s.step
    def reconcile(input: object) -> None:
        return None

    s.schedule("nightly", reconcile, cron="0 2 * * *", tz="Europe/Berlin", input={"a": 1})
    s.schedule("often", reconcile, every=timedelta(minutes=5))
    return s


def test_schedules_lists_timing_ticks_and_state(
        make_saga: Callable[..., Saga], db: Db, admin: Callable[..., Result]) -> None:
    billing = nightly(make_saga)
    serve(billing)
    db.execute("UPDATE {s}.schedule SET next_tick = next_tick - interval '5 minutes' "
               "WHERE name = 'often'")  # its tick was due a while ago
    serve(billing)
    rows = admin("schedules", "--json").json()
    assert [(r["saga"], r["name"], r["step"], r["expression"], r["tz"]) for r in rows] == [
        ("billing", "nightly", "reconcile", "0 2 * * *", "Europe/Berlin"),
        ("billing", "often", "reconcile", "every 300s", "UTC")]
    nightly_row, often = rows
    assert (nightly_row["last_tick"], nightly_row["state"]) == (None, "active")
    assert (often["ticks"], often["last_status"], often["state"]) == (1, "pending", "active")
    assert often["last_instance"].startswith("often@")
    text = admin("schedules", "--saga", "billing").out
    header, *lines = text.splitlines()
    assert header.split() == ["saga", "schedule", "step", "timing", "next_tick", "last_tick",
                              "last_status", "state", "ticks", "skipped"]
    assert "0 2 * * * Europe/Berlin" in lines[0]
    assert "pending" in lines[1]
    assert admin("schedules", "--saga", "other").out.strip() == "no schedules"


def test_pause_and_resume(make_saga: Callable[..., Saga], db: Db,
                          admin: Callable[..., Result]) -> None:
    billing = nightly(make_saga)
    serve(billing)
    done = admin("pause", "nightly")
    assert (done.code, done.out.strip()) == (0, "schedule 'nightly' of saga 'billing' paused")
    assert admin("schedules", "--json").json()[0]["state"] == "paused"
    assert admin("resume", "nightly", "--saga", "billing", "--json").json() == {
        "saga": "billing", "schedule": "nightly", "paused": False}
    row = db.record("SELECT paused, next_tick FROM {s}.schedule WHERE name = 'nightly'")
    assert row == {"paused": False, "next_tick": None}  # the next tick is computed anew
    missing = admin("pause", "nope")
    assert missing.code == 1
    assert "no schedule 'nope' in any saga" in missing.err
    serve(nightly(make_saga, "payroll"))
    ambiguous = admin("pause", "nightly")
    assert ambiguous.code == 1
    assert "exists in several sagas (billing, payroll): pass --saga NAME" in ambiguous.err


def test_stats_reports_overdue_and_schedules_shows_retired(
        make_saga: Callable[..., Saga], db: Db, admin: Callable[..., Result]) -> None:
    billing = nightly(make_saga)
    serve(billing)
    db.execute("UPDATE {s}.schedule SET next_tick = now() - interval '1 hour' "
               "WHERE name = 'nightly'")  # nobody has ticked it for an hour
    stats = admin("stats", "--json").json()
    [overdue] = stats["overdue_schedules"]
    assert (overdue["saga"], overdue["schedule"]) == ("billing", "nightly")
    assert 3600 <= overdue["overdue_seconds"] < 3700
    assert "overdue schedules (later than their maximum lateness)\nsaga" in admin("stats").out
    assert admin("schedules", "--json").json()[0]["state"].startswith("overdue 1h")
    redeployed = make_saga("billing")

    @redeployed.step
    def reconcile(input: object) -> None:
        return None

    redeployed.schedule("often", reconcile, every=timedelta(minutes=5))
    serve(redeployed)  # "nightly" is gone from the code
    states = {r["name"]: r["state"] for r in admin("schedules", "--json").json()}
    assert states == {"nightly": "retired", "often": "active"}
    assert admin("stats", "--json").json()["overdue_schedules"] == []


def test_the_commands_run_as_a_subprocess(make_saga: Callable[..., Saga], dsn: str,
                                          schema: str) -> None:
    serve(nightly(make_saga))
    done = run_cli("schedules", "--schema", schema, env_dsn=dsn)
    assert done.returncode == 0, done.stderr
    assert "Europe/Berlin" in done.stdout
    assert run_cli("pause", "often", "--schema", schema, env_dsn=dsn).returncode == 0
