"""The `pgsaga` command line beyond reading: global options before or after the command,
SAGA_SCHEMA, start and call, bulk retry, list's cut-off notice, stats --watch, progress
on a terminal, the empty-column alignment, and `pgsaga worker`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from saga import Saga, Status
from saga.admin.cli import main
from saga.admin.output import table
from tests.admin_support import Result, add, admin, ids, run_cli, shop
from tests.apps import create_log
from tests.helpers import Db

__all__ = ["admin", "shop"]  # fixtures, used by pytest

ROOT = Path(__file__).parents[1]
PGSAGA = Path(sys.executable).with_name("pgsaga")


@pytest.fixture
def cli(dsn: str, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run a command in-process, with exactly the arguments given; SAGA_DSN is *dsn*."""
    def run(*args: str) -> Result:
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return run


@pytest.fixture(autouse=True)
def environment(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGA_DSN", dsn)
    monkeypatch.delenv("SAGA_SCHEMA", raising=False)


# -- global options and SAGA_SCHEMA ---------------------------------------------------------


def test_global_options_go_before_or_after_the_command(
    shop: Saga, db: Db, schema: str, dsn: str, cli: Callable[..., Result]
) -> None:
    add(db, "shop", "o-1", "reserve")
    for args in (["--schema", schema, "list", "--json"],
                 ["list", "--json", "--schema", schema],
                 [f"--schema={schema}", f"--dsn={dsn}", "list", "--json"],
                 ["--schema", "nothere", "list", "--json", "--schema", schema]):  # last wins
        assert ids(cli(*args).json()) == ["o-1"], args


def test_saga_schema_is_the_default_and_the_option_wins(
    shop: Saga, db: Db, schema: str, cli: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    add(db, "shop", "o-1", "reserve")
    monkeypatch.setenv("SAGA_SCHEMA", schema)
    assert ids(cli("list", "--json").json()) == ["o-1"]
    missing = cli("--schema", "t_nothere", "list")
    assert missing.code == 1
    assert "missing from schema 't_nothere'" in missing.err
    assert missing.err.strip().endswith("run `python -m saga migrate --schema t_nothere`")
    monkeypatch.setenv("SAGA_SCHEMA", "Not-A-Schema")
    bad = cli("list")
    assert (bad.code, bad.err.split(":")[:3]) == (1, ["pgsaga", " error", " SAGA_SCHEMA"])


def test_a_saga_without_a_schema_takes_saga_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Saga("x").schema == "saga"
    monkeypatch.setenv("SAGA_SCHEMA", "shop_sagas")
    assert Saga("x").schema == "shop_sagas"
    assert Saga("x", schema="mine").schema == "mine"  # the code's own wins
    monkeypatch.setenv("SAGA_SCHEMA", "Bad-Name")
    with pytest.raises(ValueError, match="SAGA_SCHEMA: schema must be"):
        Saga("x")


# -- start, call, retry --all ---------------------------------------------------------------


def test_start_and_call_from_the_shell(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    done = admin("start", "o-1", "--saga", "shop", "--step", "reserve",
                 "--input", '{"item": "book"}', "--state", "[1, 2]", "--delay", "1h")
    assert done.code == 0, done.err
    assert done.out.startswith("started instance 'o-1' of saga 'shop': PENDING at step "
                               "'reserve', due in 1h00m")
    row = db.row("o-1")
    assert (row["step"], row["input"], row["state"]) == ("reserve", {"item": "book"}, [1, 2])
    again = admin("start", "o-1", "--saga", "shop", "--step", "reserve")
    assert (again.code, again.err.strip()) == (
        1, "pgsaga: error: saga 'shop' already has an instance 'o-1'")

    # An orphaned row (its step renamed away) moved to a step a runner serves, input kept.
    db.execute("UPDATE {s}.instance SET step = 'old_name' WHERE instance_id = 'o-1'")
    moved = admin("call", "o-1", "--saga", "shop", "--step", "charge", "--keep-input", "--json")
    assert moved.json()["step"] == "charge"
    assert db.row("o-1")["input"] == {"item": "book"}
    refused = admin("call", "nobody", "--saga", "shop", "--step", "charge", "--input", "1")
    assert (refused.code, refused.err.strip()) == (
        1, "pgsaga: error: saga 'shop' has no instance 'nobody'")
    bad = admin("start", "o-2", "--saga", "shop", "--step", "reserve", "--input", "{nope")
    assert bad.code == 2
    assert "pgsaga: error: argument --input: not JSON" in bad.err


def test_retry_all_replays_every_matching_error_instance(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    for i in range(7):
        add(db, "shop", f"e-{i}", "charge" if i % 2 else "reserve", Status.ERROR, error="boom")
    add(db, "mail", "m-1", "send", Status.ERROR, error="boom")
    add(db, "shop", "ok", "charge", Status.COMPLETE)

    counted = admin("retry", "--all", "--saga", "shop", "--step", "charge", "--dry-run",
                    "--json").json()
    assert (counted["count"], counted["dry_run"]) == (3, True)
    assert db.statuses()[Status.ERROR] == 8

    done = admin("retry", "--all", "--saga", "shop")
    assert done.code == 0, done.err
    assert done.out.strip() == "retried 7 ERROR instance(s) of saga 'shop'"
    assert done.err == ""  # not a terminal: no progress
    assert db.statuses()[Status.ERROR] == 1  # mail's
    assert db.row("e-3")["attempts"] == 0
    usage = admin("retry", "e-1", "--saga", "shop", "--all")
    assert (usage.code, "give an instance id (with --saga), or --all" in usage.err) == (2, True)


class Terminal(io.StringIO):
    """A stderr that says it is a terminal: what progress output looks for."""

    def isatty(self) -> bool:
        return True


def test_long_commands_show_progress_on_a_terminal_only(
    shop: Saga, db: Db, dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(5):
        add(db, "shop", f"c-{i}", "charge", Status.COMPLETE, updated="2 days")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["purge", "--older-than", "1d", "--batch", "2", "--dsn", dsn,
                 "--schema", schema]) == 0
    shown = terminal.getvalue()
    assert "\rdeleted 2 instance(s)..." in shown
    assert shown.endswith("\r")  # the line erased before the result
    assert capsys.readouterr().out.startswith("deleted 5 instance(s)")


# -- list and stats -------------------------------------------------------------------------


def test_list_says_when_it_cut_the_list(shop: Saga, db: Db, admin: Callable[..., Result]) -> None:
    for i in range(3):
        add(db, "shop", f"o-{i}", "reserve", updated=f"{i} minutes")
    cut = admin("list", "--limit", "2", "--json")
    assert ids(cut.json()) == ["o-0", "o-1"]
    assert "(the 2 most recently updated of more that match: raise --limit" in cut.err
    whole = admin("list", "--limit", "3")
    assert (whole.code, whole.err) == (0, "")


def test_an_empty_column_is_left_aligned(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    """The bug: a column without any value (error, when nothing failed) was right-aligned,
    since "all values are numbers" holds of no values."""
    assert table(["n", "error"], [[1, None], [22, None]]).splitlines() == [
        " n  error", " 1  -", "22  -"]
    add(db, "shop", "o-1", "reserve")
    header, line = admin("list").out.splitlines()
    start = header.index("error")
    assert line[start] == "-"


def test_stats_watch_reports_again_until_the_count(
    shop: Saga, db: Db, admin: Callable[..., Result]
) -> None:
    add(db, "shop", "o-1", "reserve")
    done = admin("stats", "--interval", "0.05", "--count", "3", "--json")
    assert done.code == 0, done.err
    reports = [json.loads(line) for line in done.out.splitlines() if line]
    assert len(reports) == 3
    assert reports[0]["sagas"][0]["pending"] == 1
    text = admin("stats", "--watch", "--interval", "0.05", "--count", "2").out
    assert text.count("(Ctrl-C to stop)") == 2
    assert "\x1b[" not in text  # not a terminal: no screen clearing
    usage = admin("stats", "--count", "2")
    assert usage.code == 2


# -- the console script and its worker ------------------------------------------------------


def test_pgsaga_runs_the_worker_and_the_admin_commands(dsn: str, schema: str, db: Db) -> None:
    """`pgsaga worker` is `python -m saga.worker`; the global options go along."""
    assert PGSAGA.exists(), f"{PGSAGA} is missing: reinstall, pip install -e '.[test]'"
    env = {**os.environ, "SAGA_DSN": dsn, "SAGA_TEST_SCHEMA": schema}
    env.pop("SAGA_SCHEMA", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PGSAGA), *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60, check=False)

    migrated = run("--schema", schema, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    create_log(db.conn, schema)
    started = run("--schema", schema, "start", "c-1", "--saga", "chain", "--step", "first",
                  "--input", '{"id": "c-1"}')
    assert started.returncode == 0, started.stderr
    drained = run("--schema", schema, "worker", "tests.apps.chain:saga", "--drain",
                  "--log-level", "warning")
    assert drained.returncode == 0, drained.stderr
    assert drained.stdout.startswith("drained: ")
    shown = json.loads(run("show", "c-1", "--json", "--schema", schema).stdout)
    assert shown["status"] == "complete"
    elsewhere = run("worker", "tests.apps.chain:saga", "--drain", "--schema", "t_elsewhere",
                    "--log-level", "WARNING")  # chain names its schema in its code: kept
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert (f"saga chain keeps schema {schema}, which its code names (--schema t_elsewhere "
            "is for the sagas that name none)") in elsewhere.stderr
    helped = run("worker", "--help")
    assert helped.stdout.startswith("usage: pgsaga worker")
    bad = run("worker", "tests.apps.chain:saga", "--log-level", "loud")
    assert bad.returncode == 2
    assert "pgsaga: error: argument --log-level: invalid level 'loud'" in bad.stderr


def test_python_m_saga_still_works(dsn: str) -> None:
    helped = run_cli("--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: python -m saga ")
    assert "\n    worker " in helped.stdout
