"""The admin CLI, `python -m saga list|show|stats|retry|cancel|purge`, on a real server.

Most tests call `saga.admin.cli.main([...])` in-process and parse its `--json` output;
a few run the real `python -m saga` subprocess (the DSN from the environment, the exit
status, the human tables, errors that must not show a password).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import psycopg
import pytest

from saga import Saga, Status
from saga.admin.cli import duration, main
from saga.admin.output import age, cell, one_line
from saga.store import Store
from tests.admin_support import TRACEBACK, Result, add, admin, ids, run_cli, shop
from tests.helpers import Db

__all__ = ["admin", "shop"]  # the fixtures imported from admin_support: used, by pytest


# -- list -----------------------------------------------------------------------------------


def test_list_shows_the_most_recently_updated_first(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    add(db, "shop", "old", "reserve", updated="3 days")
    add(db, "shop", "new", "charge", Status.ERROR, updated="1 minute", error=TRACEBACK)
    add(db, "mail", "m1", "send", Status.COMPLETE, updated="2 hours")

    rows = admin("list", "--json").json()

    assert ids(rows) == ["new", "m1", "old"]
    assert set(rows[0]) == {"id", "saga", "instance", "step", "status", "status_code",
                            "attempts", "run_after", "updated_at", "error"}
    assert rows[0]["saga"] == "shop"
    assert (rows[0]["status"], rows[0]["status_code"]) == ("error", 3)
    assert rows[0]["error"] == "RuntimeError: the card was declined"  # the gist
    assert rows[2]["error"] is None
    assert rows[0]["updated_at"].endswith("+00:00")


def test_list_filters(shop: Saga, db: Db, admin: Callable[..., Result]) -> None:
    add(db, "shop", "p1", "reserve", updated="3 days")
    add(db, "shop", "p2", "charge", updated="10 minutes")
    add(db, "shop", "e1", "charge", Status.ERROR, updated="2 hours")
    add(db, "shop", "c1", "charge", Status.COMPLETE, updated="8 days")
    add(db, "mail", "m1", "send", Status.CANCELLED, updated="1 second")

    def listed(*args: str) -> list[str]:
        return ids(admin("list", "--json", *args).json())

    assert listed("--saga", "shop") == ["p2", "e1", "p1", "c1"]
    assert listed("--saga", "nobody") == []
    assert listed("--status", "PENDING,error") == ["p2", "e1", "p1"]
    assert listed("--status", "2,4") == ["m1", "c1"]  # numbers too
    assert listed("--step", "charge") == ["p2", "e1", "c1"]
    assert listed("--older-than", "1h") == ["e1", "p1", "c1"]
    assert listed("--older-than", "7d") == ["c1"]
    assert listed("--newer-than", "1d") == ["m1", "p2", "e1"]
    assert listed("--older-than", "1h", "--newer-than", "1w") == ["e1", "p1"]
    assert listed("--saga", "shop", "--status", "pending", "--step", "charge") == ["p2"]
    assert listed("--limit", "2") == ["m1", "p2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--status", "done"], "unknown status 'done' (known: pending, running"),
        (["list", "--older-than", "7 days"], "invalid duration '7 days'"),
        (["list", "--limit", "0"], "must be at least 1"),
        (["list", "--schema", "Bad-Name"], "schema must be a lowercase identifier"),
        (["show"], "give the instance id or --id ROW_ID"),
        (["show", "x", "--id", "3"], "give the instance id or --id ROW_ID"),
        (["retry", "x"], "the following arguments are required: --saga"),
        (["purge", "--older-than", "1d", "--status", "complete,running"],
         "purge deletes finished instances only: not running"),
        (["purge"], "the following arguments are required: --older-than"),
    ],
    ids=["status", "duration", "limit", "schema", "show-nothing", "show-both", "retry-saga",
         "purge-running", "purge-cutoff"],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_durations() -> None:
    assert [duration(d) for d in ("30s", "5m", "2h", "7d", "1w", "1h30m", "1.5h", "0s")] == [
        30, 300, 7200, 7 * 86400, 7 * 86400, 5400, 5400, 0]
    for bad in ("", "7", "d", "-1d", "1y", "1d 2h", "1000000w"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
    assert [age(s) for s in (0.25, 42, 192, 7500, 3 * 86400 + 4 * 3600)] == [
        "250ms", "42s", "3m12s", "2h05m", "3d04h"]
    assert one_line("x" * 100, 10) == "xxxxxxx..."
    assert cell("red\x1b[31m\tx") == "red\\x1b[31m\\tx"  # no terminal escapes


# -- show -----------------------------------------------------------------------------------


def test_show_prints_every_column_and_the_whole_error(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    add(db, "shop", "o1", "charge", Status.ERROR, error=TRACEBACK,
        input={"amount": 10, "items": ["a", "b"]})
    db.execute("UPDATE {s}.instance SET state = '{{\"paid\": false}}', attempts = 25")

    row = admin("show", "o1", "--json").json()

    assert row["input"] == {"amount": 10, "items": ["a", "b"]}  # plain JSON, decoded
    assert row["state"] == {"paid": False}
    assert row["error"] == TRACEBACK
    assert (row["saga"], row["instance"], row["step"], row["status"]) == (
        "shop", "o1", "charge", "error")
    assert row["attempts"] == 25
    assert row["cancel_requested"] is False  # every column, those of later migrations too
    assert admin("show", "--id", str(row["id"]), "--json").json() == row

    text = admin("show", "o1").out  # for people: aligned fields, JSON indented
    assert "status            error (3)\n" in text
    assert '\nstate             {\n                    "paid": false\n' in text
    assert text.rstrip().endswith("RuntimeError: the card was declined")


def test_show_an_ambiguous_or_unknown_instance_fails(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    add(db, "shop", "x", "reserve")
    add(db, "mail", "x", "send", Status.COMPLETE)

    ambiguous = admin("show", "x", "--json")
    assert ambiguous.code == 1
    assert "instance 'x' exists in several sagas (mail, shop): pass --saga" in ambiguous.err
    assert admin("show", "x", "--saga", "mail", "--json").json()["status"] == "complete"
    assert admin("show", "x", "--saga", "shop", "--json").json()["step"] == "reserve"

    for args, message in [(["y"], "no instance 'y' in any saga"),
                          (["x", "--saga", "other"], "no instance 'x' in saga 'other'"),
                          (["--id", "999999"], "no instance has row id 999999")]:
        result = admin("show", *args)
        assert (result.code, result.out) == (1, "")
        assert result.err.strip() == f"pgsaga: error: {message}"


# -- stats ----------------------------------------------------------------------------------


def test_stats_counts_backlog_runners_and_orphaned_steps(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    add(db, "shop", "r1", "reserve", due="10 minutes")
    add(db, "shop", "r2", "reserve", due="1 minute")
    add(db, "shop", "c1", "charge", due="5 minutes")
    add(db, "shop", "later", "charge", due="-1 hour")  # not due: no backlog, no orphan
    add(db, "shop", "run", "charge", Status.RUNNING)
    add(db, "mail", "m1", "send", due="2 minutes")
    add(db, "mail", "m2", "send", Status.COMPLETE)
    add(db, "mail", "m3", "send", Status.CANCELLED)
    store = Store(db.schema)
    store.register_runner(db.conn, "web-1:42:ab", "web-1", 42, {"shop": ["reserve"]}, 30)
    store.register_runner(db.conn, "old:7:cd", "old", 7, {"shop": ["charge"], "mail": ["send"]},
                          30)
    db.execute("UPDATE {s}.runner SET expires_at = now() - interval '1 minute', "
               "heartbeat_at = now() - interval '5 minutes' WHERE id = 'old:7:cd'")

    stats = admin("stats", "--json").json()

    sagas = {s["saga"]: s for s in stats["sagas"]}
    assert sagas["shop"] | {"lag_seconds": 0} == {
        "saga": "shop", "pending": 4, "running": 1, "complete": 0, "error": 0,
        "cancelled": 0, "total": 5, "due": 3, "lag_seconds": 0}
    assert 600 <= sagas["shop"]["lag_seconds"] < 660  # the oldest due row's wait
    assert (sagas["mail"]["complete"], sagas["mail"]["cancelled"], sagas["mail"]["due"]) == (
        1, 1, 1)
    runners = {r["id"]: r for r in stats["runners"]}
    assert runners["web-1:42:ab"]["live"] is True
    assert runners["web-1:42:ab"]["serves"] == {"shop": ["reserve"]}
    assert (runners["web-1:42:ab"]["hostname"], runners["web-1:42:ab"]["pid"]) == ("web-1", 42)
    assert runners["web-1:42:ab"]["heartbeat_age_seconds"] < 60
    assert runners["old:7:cd"]["live"] is False  # expired: it serves nothing any more
    assert runners["old:7:cd"]["heartbeat_age_seconds"] >= 300
    orphaned = [(o["saga"], o["step"], o["due"]) for o in stats["orphaned"]]
    assert orphaned == [("mail", "send", 1), ("shop", "charge", 1)]

    text = admin("stats").out
    assert "\nrunners\nid           host   pid  heartbeat" in text
    assert "web-1:42:ab  web-1   42" in text
    assert "shop: reserve" in text
    assert "orphaned due rows (no live runner serves their step)\nsaga  step" in text


def test_stats_of_an_empty_schema(shop: Saga, admin: Callable[..., Result]) -> None:
    assert admin("stats", "--json").json() == {"sagas": [], "runners": [], "orphaned": [],
                                                "overdue_schedules": [], "limits": []}
    assert admin("stats").out == "instances\nnone\n\nrunners\nnone\n\n" \
        "orphaned due rows (no live runner serves their step)\nnone\n\n" \
        "overdue schedules (later than their maximum lateness)\nnone\n"


# -- retry and cancel -----------------------------------------------------------------------


def test_retry_replays_an_error_instance(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    add(db, "shop", "bad", "charge", Status.ERROR, error=TRACEBACK)
    db.execute("UPDATE {s}.instance SET attempts = 25")

    done = admin("retry", "bad", "--saga", "shop", "--json").json()

    assert (done["status"], done["step"], done["attempts"], done["error"]) == (
        "pending", "charge", 0, None)
    assert shop.get("bad").status == Status.PENDING
    again = admin("retry", "bad", "--saga", "shop")
    assert again.code == 1
    assert "is PENDING: it cannot be retried" in again.err
    unknown = admin("retry", "bad", "--saga", "mail")
    assert unknown.code == 1
    assert "saga 'mail' has no instance 'bad'" in unknown.err


def test_cancel_a_pending_and_a_running_instance(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    add(db, "shop", "p", "reserve", due="-1 hour")
    add(db, "shop", "r", "charge", Status.RUNNING)

    assert admin("cancel", "p", "--saga", "shop", "--json").json()["status"] == "cancelled"
    running = admin("cancel", "r", "--saga", "shop")

    assert running.code == 0, running.err
    assert running.out == ("instance 'r' of saga 'shop': cancel requested; its runner ends "
                           "it at the step boundary\n")
    assert db.row("r")["cancel_requested"] is True
    assert shop.get("p").status == Status.CANCELLED
    finished = admin("cancel", "p", "--saga", "shop")
    assert finished.code == 1
    assert "is CANCELLED" in finished.err


# -- purge ----------------------------------------------------------------------------------


def test_purge_deletes_old_finished_instances_only(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    for status in Status:
        for n in range(3):
            add(db, "shop", f"old-{status.name}-{n}", "charge", status, updated="8 days")
        add(db, "shop", f"new-{status.name}", "charge", status, updated="6 days")
    add(db, "mail", "old-mail", "send", Status.COMPLETE, updated="30 days")

    def left() -> set[str]:
        return {i for (i,) in db.rows("SELECT instance_id FROM {s}.instance")}

    everything = left()
    dry = admin("purge", "--older-than", "1w", "--dry-run", "--json").json()
    assert (dry["count"], dry["dry_run"], dry["statuses"]) == (7, True, ["complete", "cancelled"])
    assert left() == everything

    only_mail = admin("purge", "--older-than", "1w", "--saga", "mail", "--json").json()
    assert only_mail["count"] == 1
    purged = admin("purge", "--older-than", "1w", "--batch", "2", "--json").json()
    assert (purged["count"], purged["dry_run"]) == (6, False)
    assert left() == everything - {"old-mail"} - {
        f"old-{s}-{n}" for s in ("COMPLETE", "CANCELLED") for n in range(3)}

    errors = admin("purge", "--older-than", "7d", "--status", "error")
    assert errors.out.startswith("deleted 3 instance(s) (error) updated before ")
    assert {i for i in left() if i.startswith("old-")} == {
        f"old-{s}-{n}" for s in ("PENDING", "RUNNING") for n in range(3)}
    assert admin("purge", "--older-than", "1w", "--json").json()["count"] == 0


def test_purge_passes_rows_another_transaction_holds(
    dsn: str, shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    for n in range(3):
        add(db, "shop", f"done-{n}", "charge", Status.ERROR, updated="2 days")
    with psycopg.connect(dsn) as other, other.transaction():
        other.execute(db.sql("SELECT 1 FROM {s}.instance WHERE instance_id = 'done-1' "
                             "FOR UPDATE"))  # a retry() in flight, say

        purged = admin("purge", "--older-than", "1d", "--status", "error", "--batch", "1")

    assert purged.out.startswith("deleted 2 instance(s) (error)")  # and did not wait
    assert [i for (i,) in db.rows("SELECT instance_id FROM {s}.instance")] == ["done-1"]


# -- the real process -----------------------------------------------------------------------


def test_the_process_reads_saga_dsn_and_prints_a_table(
    dsn: str, schema: str, shop: Saga, db: Db
) -> None:
    add(db, "shop", "order-1", "reserve", updated="1 minute")
    add(db, "shop", "order-22", "charge", Status.ERROR, updated="1 hour", error=TRACEBACK)

    done = run_cli("list", "--schema", schema, env_dsn=dsn)

    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.split() == ["id", "saga", "instance", "step", "status", "attempts",
                              "run_after", "updated_at", "error"]
    assert [line.split()[2] for line in lines] == ["order-1", "order-22"]
    for column in ("instance", "step", "status", "run_after", "error"):  # left-aligned
        start = header.index(column)
        assert all(line[start - 1] == " " != line[start] for line in lines), column
    assert lines[1].endswith("RuntimeError: the card was declined")
    rows = json.loads(run_cli("list", "--json", "--schema", schema, env_dsn=dsn).stdout)
    assert ids(rows) == ["order-1", "order-22"]


def test_the_process_exits_1_without_tables_and_hints_at_migrate(dsn: str, schema: str) -> None:
    done = run_cli("stats", "--dsn", dsn, "--schema", schema)

    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"pgsaga: error: the saga tables are missing from schema "
                           f"'{schema}'")
    assert line.endswith(f"run `python -m saga migrate --schema {schema}`")


def test_the_process_never_shows_the_password() -> None:
    done = run_cli("list", "--dsn", "postgresql://u:s3cret@127.0.0.1:1/x")

    assert done.returncode == 1
    assert "s3cret" not in done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("pgsaga: error: cannot connect to host=127.0.0.1 port=1")


@pytest.mark.parametrize(
    "bad_dsn",
    ["postgresql://u:s3cret@[::1/x", "postgresql://u:s3cret@127.0.0.1:1/x?bogus=1"],
    ids=["unclosed-bracket", "unknown-parameter"],
)
def test_a_malformed_dsn_fails_without_showing_the_password(
    capsys: pytest.CaptureFixture[str], bad_dsn: str
) -> None:
    assert main(["show", "x", "--dsn", bad_dsn]) == 1
    captured = capsys.readouterr()
    assert "s3cret" not in captured.out + captured.err
    assert captured.err.startswith("pgsaga: error: ")


def test_the_process_usage_and_help(dsn: str) -> None:
    usage = run_cli("purge", "--older-than", "1d", "--status", "pending", env_dsn=dsn)
    assert usage.returncode == 2
    assert "purge deletes finished instances only: not pending" in usage.stderr

    helped = run_cli("--help")
    assert helped.returncode == 0
    for command in ("list", "show", "stats", "retry", "cancel", "purge", "migrate"):
        assert f"\n    {command} " in helped.stdout
