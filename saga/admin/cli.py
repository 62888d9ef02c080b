"""`python -m saga COMMAND`: inspect and steer the saga instances of a schema.

Commands: list, show, stats, retry, cancel, purge, migrate. Each takes --dsn (default:
SAGA_DSN) and --schema; all but migrate take --json. Exit status: 0 done, 1 not found,
refused (a conflict) or the database failed, 2 a usage error.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .. import __version__
from ..conninfo import check_connection, describe
from ..core import MAX_INSTANCE, MAX_NAME, check_text
from ..errors import SagaException
from ..records import Status
from ..sqlfiles import check_schema
from ..store import missing_tables
from . import commands
from .commands import CommandError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_LIMIT: Final = 50
DEFAULT_BATCH: Final = 1000
PURGED_BY_DEFAULT: Final = (Status.COMPLETE, Status.CANCELLED)
MAX_DURATION: Final = 100 * 365 * 86400.0  # beyond this, timestamps overflow; nobody means it

DESCRIPTION: Final = """\
Inspect and steer the saga instances of a schema, and create or upgrade it (migrate).

Every command takes --dsn (default: SAGA_DSN) and --schema (default: saga); all but
migrate print aligned tables, or JSON with --json. Exit status: 0 done; 1 not found,
refused (a conflict) or the database failed; 2 a usage error."""

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


# -- argument types -------------------------------------------------------------------------


def duration(text: str) -> float:
    """Seconds of a duration such as `30s`, `5m`, `2h`, `7d`, `1w` or `1h30m`."""
    spec = text.strip().lower()
    parts = _DURATION_PART.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number and a unit (s, m, h, d, w), "
            "e.g. 30s, 5m, 2h, 7d, 1w or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"duration {text!r} is longer than 100 years")
    return seconds


def statuses(text: str) -> list[Status]:
    """Statuses named (case-insensitively) or numbered, separated by commas."""
    found: list[Status] = []
    for item in (part.strip() for part in text.split(",")):
        try:
            status = Status(int(item)) if item.isdigit() else Status[item.upper()]
        except (KeyError, ValueError):
            known = ", ".join(s.name.lower() for s in Status)
            raise argparse.ArgumentTypeError(
                f"unknown status {item!r} (known: {known}, or their numbers "
                f"0-{max(Status)})") from None
        if status not in found:
            found.append(status)
    return found


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def schema_name(text: str) -> str:
    try:
        return check_schema(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def name_of(what: str, limit: int) -> Callable[[str], str]:
    """An argument type that checks a saga name or instance id as the API does."""
    def check(text: str) -> str:
        try:
            return check_text(what, text, limit)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    check.__name__ = what  # argparse names the type in its messages
    return check


saga_name = name_of("saga name", MAX_NAME)
instance_id = name_of("instance", MAX_INSTANCE)


# -- the parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each subparser sets `run` to its command function."""
    parser = argparse.ArgumentParser(
        prog="python -m saga", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pgsaga {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("--dsn", help="the database (default: SAGA_DSN)")
    database.add_argument("--schema", default="saga", type=schema_name,
                          help="the schema (default: saga)")
    common = argparse.ArgumentParser(add_help=False, parents=[database])
    common.add_argument("--json", action="store_true", help="print JSON, for scripts")

    def add(name: str, run: commands.Command, help: str, description: str,
            parents: Sequence[argparse.ArgumentParser] = (common,)) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=description, parents=parents)
        cmd.set_defaults(run=run, parser=cmd)
        return cmd

    cmd = add("list", commands.list_instances, "list instances, most recently updated first",
              "List instances, most recently updated first. --older-than and --newer-than "
              "look at updated_at, when the instance last changed.")
    cmd.add_argument("--saga", type=saga_name, help="only this saga")
    cmd.add_argument("--status", type=statuses, metavar="STATUS[,...]",
                     help="only these statuses: pending, running, complete, error, cancelled")
    cmd.add_argument("--step", help="only instances at this step")
    cmd.add_argument("--older-than", type=duration, metavar="DURATION",
                     help="updated longer ago than this (30s, 5m, 2h, 7d, 1w)")
    cmd.add_argument("--newer-than", type=duration, metavar="DURATION",
                     help="updated within this long")
    cmd.add_argument("--limit", type=positive, default=DEFAULT_LIMIT,
                     help=f"at most this many (default {DEFAULT_LIMIT})")

    cmd = add("show", commands.show, "show one instance in full",
              "Show every column of an instance: input and state as JSON, the last error "
              "in full.")
    cmd.add_argument("instance", nargs="?", type=instance_id, help="the instance id")
    cmd.add_argument("--saga", type=saga_name,
                     help="its saga (needed when several sagas have this instance id)")
    cmd.add_argument("--id", type=positive, dest="row_id", metavar="ID",
                     help="the numeric row id instead of the instance id")

    add("stats", commands.stats, "counts, backlog, lag, runners and orphaned steps",
        "Counts by saga and status; due PENDING rows (the backlog) and the age of the "
        "oldest (the lag); the runners, with their heartbeat and the steps they serve; "
        "due rows whose step no live runner serves.")

    for name, run, help, description in (
        ("retry", commands.retry, "replay an ERROR instance",
         "Replay an ERROR instance: PENDING again at the step that failed, attempts reset."),
        ("cancel", commands.cancel, "cancel a PENDING or RUNNING instance",
         "Cancel an instance: a PENDING one at once, a RUNNING one at its next step "
         "boundary (its runner ends it CANCELLED instead of going on)."),
    ):
        cmd = add(name, run, help, description)
        cmd.add_argument("instance", type=instance_id, help="the instance id")
        cmd.add_argument("--saga", type=saga_name, required=True, help="its saga")

    cmd = add("purge", commands.purge, "delete finished instances older than a cutoff",
              "Delete finished instances last updated before the cutoff, in batches of "
              "short transactions; PENDING and RUNNING instances are never touched.")
    cmd.add_argument("--older-than", type=duration, required=True, metavar="DURATION",
                     help="updated longer ago than this (30s, 5m, 2h, 7d, 1w)")
    cmd.add_argument("--status", type=statuses, metavar="STATUS[,...]",
                     default=list(PURGED_BY_DEFAULT),
                     help="which finished statuses (default: complete,cancelled)")
    cmd.add_argument("--saga", type=saga_name, help="only this saga")
    cmd.add_argument("--batch", type=positive, default=DEFAULT_BATCH,
                     help=f"rows per delete (default {DEFAULT_BATCH})")
    cmd.add_argument("--dry-run", action="store_true", help="only count them")

    add("migrate", commands.migrate, "create or upgrade the saga schema (idempotent)",
        "Apply the missing migrations to the schema, under an advisory lock: safe to run "
        "from several processes at once.", parents=(database,))
    return parser


def check_usage(args: argparse.Namespace) -> None:
    """What argparse alone cannot check; exit 2 with the command's usage."""
    if args.command == "show" and (args.instance is None) == (args.row_id is None):
        args.parser.error("give the instance id or --id ROW_ID (one of them)")
    if args.command == "show" and args.row_id is not None and args.saga is not None:
        args.parser.error("--saga goes with an instance id, not with --id")
    if args.command == "purge":
        unfinished = [s.name.lower() for s in args.status if not s.finished]
        if unfinished:
            args.parser.error(f"purge deletes finished instances only: not "
                              f"{', '.join(unfinished)}")


# -- running a command ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command *argv* (default: the process' arguments); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        check_usage(args)
    except SystemExit as e:  # usage errors, --help, --version
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    prefix = f"saga {args.command}: error:"
    dsn = args.dsn or os.environ.get("SAGA_DSN")
    if not dsn:  # like the worker: a startup error, not a usage one
        print(f"{prefix} no database: pass --dsn or set SAGA_DSN", file=sys.stderr)
        return EXIT_FAILED
    try:
        check_connection(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn, schema_required(args.schema):
            output = args.run(args, conn, dsn)
    except (CommandError, SagaException, ConnectionError) as e:
        print(f"{prefix} {scrub(str(e), dsn)}", file=sys.stderr)
        return EXIT_FAILED
    except psycopg.Error as e:
        print(f"{prefix} {type(e).__name__}: {scrub(first_line(e), dsn)}", file=sys.stderr)
        return EXIT_FAILED
    if output:
        print(output, flush=True)
    return EXIT_OK


@contextmanager
def schema_required(schema: str) -> Iterator[None]:
    """Turn a missing table or column into the advice to migrate."""
    try:
        yield
    except psycopg.errors.UndefinedTable as e:
        raise CommandError(missing_tables(schema, str(e.diag.message_primary))) from e
    except psycopg.errors.UndefinedColumn as e:
        raise CommandError(
            f"the saga tables in schema {schema!r} are older than this pgsaga "
            f"({e.diag.message_primary}): run `python -m saga migrate`") from e


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def scrub(text: str, dsn: str) -> str:
    """*text* without the DSN or its password, should a message quote them."""
    text = text.replace(dsn, describe(dsn))
    try:
        secret: Any = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return text
    return text.replace(str(secret), "***") if secret else text


if __name__ == "__main__":
    sys.exit(main())
