"""`pgsaga COMMAND` (or `python -m saga COMMAND`): inspect and steer the saga instances of
a schema, create or upgrade it (migrate), and run a worker (`pgsaga worker`, which is
`python -m saga.worker`).

--dsn (default: SAGA_DSN) and --schema (default: SAGA_SCHEMA, else saga) go before or
after the command. Exit status: 0 done, 1 not found, refused (a conflict) or the
database failed, 2 a usage error. Every error line starts with `pgsaga: error:`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, NamedTuple

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .. import __version__
from ..conninfo import check_connection, describe
from ..errors import SagaException
from ..records import Status
from ..store import missing_tables
from ..web import server as web_server
from . import commands, schedules, steering
from .arguments import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    add_global_options,
    database_of,
    duration,
    fail,
    instance_id,
    json_value,
    positive,
    saga_name,
    seconds,
    statuses,
    step_name,
)
from .commands import CommandError

DEFAULT_LIMIT: Final = 50
DEFAULT_BATCH: Final = 1000
PURGED_BY_DEFAULT: Final = (Status.COMPLETE, Status.CANCELLED)
GLOBAL_OPTIONS: Final = ("--dsn", "--schema")  # each takes a value

DESCRIPTION: Final = """\
Inspect and steer the saga instances of a schema, create or upgrade it (migrate), and
run a worker (worker).

--dsn (default: SAGA_DSN) and --schema (default: SAGA_SCHEMA, else saga) go before or
after the command; the commands that print take --json. Exit status: 0 done; 1 not
found, refused (a conflict) or the database failed; 2 a usage error."""


# -- the commands: one line each (name, function, arguments, help, description) ------------


class Spec(NamedTuple):
    """A command: *arguments* adds its own options to its subparser; *json* says whether it
    takes --json; *run* (None for `worker`, which has its own parser) does the work."""

    name: str
    run: commands.Command | None
    arguments: Callable[[argparse.ArgumentParser], None]
    help: str
    description: str
    json: bool = True


def _list(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--saga", type=saga_name, help="only this saga")
    cmd.add_argument("--status", type=statuses, metavar="STATUS[,...]",
                     help="only these statuses: pending, running, complete, error, cancelled")
    cmd.add_argument("--step", help="only instances at this step")
    _age_filters(cmd)
    cmd.add_argument("--limit", type=positive, default=DEFAULT_LIMIT,
                     help=f"at most this many (default {DEFAULT_LIMIT}); "
                     "says so when more match")


def _age_filters(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--older-than", type=duration, metavar="DURATION",
                     help="updated longer ago than this (30s, 5m, 2h, 7d, 1w)")
    cmd.add_argument("--newer-than", type=duration, metavar="DURATION",
                     help="updated within this long")


def _show(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("instance", nargs="?", type=instance_id, help="the instance id")
    cmd.add_argument("--saga", type=saga_name,
                     help="its saga (needed when several sagas have this instance id)")
    cmd.add_argument("--id", type=positive, dest="row_id", metavar="ID",
                     help="the numeric row id instead of the instance id")


def _stats(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--watch", action="store_true",
                     help=f"report again every {commands.WATCH_INTERVAL:g}s until Ctrl-C")
    cmd.add_argument("--interval", type=seconds, metavar="SECONDS",
                     help="report again every SECONDS (implies --watch)")
    cmd.add_argument("--count", type=positive, help="with --watch: stop after COUNT reports")


def _instance(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("instance", type=instance_id, help="the instance id")
    cmd.add_argument("--saga", type=saga_name, required=True, help="its saga")


def _start(cmd: argparse.ArgumentParser) -> None:
    _instance(cmd)
    cmd.add_argument("--step", type=step_name, required=True, help="the step to run first")
    cmd.add_argument("--input", type=json_value, metavar="JSON",
                     help="its input as JSON (default null; - reads it from stdin)")
    cmd.add_argument("--state", type=json_value, metavar="JSON",
                     help="the initial state as JSON (default null)")
    cmd.add_argument("--delay", type=duration, metavar="DURATION",
                     help="due after this long (30s, 5m, ...; default at once)")


def _call(cmd: argparse.ArgumentParser) -> None:
    _instance(cmd)
    cmd.add_argument("--step", type=step_name, required=True, help="the step to run next")
    given = cmd.add_mutually_exclusive_group()
    given.add_argument("--input", type=json_value, metavar="JSON",
                       help="its input as JSON (default null; - reads it from stdin)")
    given.add_argument("--keep-input", action="store_true",
                       help="keep the instance's input (to move an orphaned row to a step "
                       "a runner serves)")
    cmd.add_argument("--delay", type=duration, metavar="DURATION",
                     help="due after this long (default at once)")


def _retry(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("instance", nargs="?", type=instance_id, help="the instance id")
    cmd.add_argument("--saga", type=saga_name, help="its saga (needed with an instance id)")
    cmd.add_argument("--all", action="store_true",
                     help="every ERROR instance that matches --saga, --step, --older-than "
                     "and --newer-than")
    cmd.add_argument("--step", help="with --all: only instances that failed at this step")
    _age_filters(cmd)
    cmd.add_argument("--dry-run", action="store_true", help="with --all: only count them")


def _purge(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--older-than", type=duration, required=True, metavar="DURATION",
                     help="updated longer ago than this (30s, 5m, 2h, 7d, 1w)")
    cmd.add_argument("--status", type=statuses, metavar="STATUS[,...]",
                     default=list(PURGED_BY_DEFAULT),
                     help="which finished statuses (default: complete,cancelled)")
    cmd.add_argument("--saga", type=saga_name, help="only this saga")
    cmd.add_argument("--batch", type=positive, default=DEFAULT_BATCH,
                     help=f"rows per delete (default {DEFAULT_BATCH})")
    cmd.add_argument("--dry-run", action="store_true", help="only count them")


def _nothing(cmd: argparse.ArgumentParser) -> None:
    pass


COMMANDS: Final[Sequence[Spec]] = (
    Spec("list", commands.list_instances, _list,
         "list instances, most recently updated first",
         "List instances, most recently updated first. --older-than and --newer-than look "
         "at updated_at, when the instance last changed."),
    Spec("show", commands.show, _show, "show one instance in full",
         "Show every column of an instance: input and state as JSON, the last error in full."),
    Spec("stats", commands.stats, _stats, "counts, backlog, lag, runners and orphaned steps",
         "Counts by saga and status; due PENDING rows (the backlog) and the age of the "
         "oldest (the lag); the runners, with their heartbeat and the steps they serve; due "
         "rows whose step no live runner serves; schedules overdue by more than their "
         "maximum lateness."),
    Spec("start", steering.start, _start, "start an instance at a step, with a JSON input",
         "Start an instance, as saga.start() does: PENDING at the step, due at once or after "
         "--delay. The input is not checked against the step's annotations here: a worker "
         "that cannot decode it ends the instance in ERROR."),
    Spec("call", steering.call, _call, "make a step the next of a PENDING instance",
         "Make a step the next of a PENDING instance, as saga.call() does; e.g. move an "
         "orphaned row (see stats) to a step a runner serves, with --keep-input."),
    Spec("retry", steering.retry, _retry, "replay an ERROR instance (or all that match)",
         "Replay an ERROR instance: PENDING again at the step that failed, attempts reset. "
         "With --all, every ERROR instance that matches, one short statement each."),
    Spec("cancel", steering.cancel, _instance, "cancel a PENDING or RUNNING instance",
         "Cancel an instance: a PENDING one at once, a RUNNING one at its next step "
         "boundary (its runner ends it CANCELLED instead of going on)."),
    Spec("schedules", schedules.list_schedules, schedules.list_arguments,
         "list the schedules and their next and last ticks",
         "List every schedule: its saga and step, timing and zone, next tick, last tick and "
         "the status of that tick's instance, and whether it is paused, overdue, or retired "
         "(the code no longer declares it)."),
    Spec("pause", schedules.pause, schedules.steer_arguments,
         "pause a schedule (no ticks until resumed)",
         "Pause a schedule: no tick is made until it is resumed; instances already made run "
         "on."),
    Spec("resume", schedules.resume, schedules.steer_arguments,
         "resume a paused schedule from now on",
         "Resume a schedule: its next tick is computed from now (the ticks that fell while "
         "it was paused are not made)."),
    Spec("purge", commands.purge, _purge, "delete finished instances older than a cutoff",
         "Delete finished instances last updated before the cutoff, in batches of short "
         "transactions; PENDING and RUNNING instances are never touched."),
    Spec("migrate", commands.migrate, _nothing, "create or upgrade the saga schema (idempotent)",
         "Apply the missing migrations to the schema, under an advisory lock: safe to run "
         "from several processes at once.", json=False),
    *web_server.specs(Spec),
    Spec("worker", None, _nothing, "run a worker: `pgsaga worker --help` (= python -m "
         "saga.worker)", "", json=False),
)


# -- the parser -----------------------------------------------------------------------------


def build_parser(prog: str = "pgsaga") -> argparse.ArgumentParser:
    """The parser of every command; each subparser sets `run` to its command function."""
    parser = Parser(prog=prog, description=DESCRIPTION,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pgsaga {__version__}")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for spec in COMMANDS:
        cmd = sub.add_parser(spec.name, help=spec.help, description=spec.description)
        add_global_options(cmd)
        if spec.json:
            cmd.add_argument("--json", action="store_true", help="print JSON, for scripts")
        spec.arguments(cmd)
        cmd.set_defaults(run=spec.run, parser=cmd, json=False)
    return parser


def check_usage(args: argparse.Namespace) -> None:
    """What argparse alone cannot check; exit 2 with the command's usage."""
    error = args.parser.error
    if args.command == "show" and (args.instance is None) == (args.row_id is None):
        error("give the instance id or --id ROW_ID (one of them)")
    if args.command == "show" and args.row_id is not None and args.saga is not None:
        error("--saga goes with an instance id, not with --id")
    if args.command == "retry" and args.all == (args.instance is not None):
        error("give an instance id (with --saga), or --all")
    if args.command == "retry" and args.instance is not None and args.saga is None:
        error("the following arguments are required: --saga (with an instance id)")
    if args.command == "retry" and not args.all and (
            args.step or args.older_than or args.newer_than or args.dry_run):
        error("--step, --older-than, --newer-than and --dry-run go with --all")
    if args.command == "stats" and args.count is not None and not (args.watch or args.interval):
        error("--count goes with --watch or --interval")
    if args.command == "purge":
        unfinished = [s.name.lower() for s in args.status if not s.finished]
        if unfinished:
            error(f"purge deletes finished instances only: not {', '.join(unfinished)}")


def split_command(argv: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """The global options before the command, the command, and what follows it."""
    at = 0
    while at < len(argv):
        token = argv[at]
        if token in GLOBAL_OPTIONS:
            at += 2
        elif token.startswith(tuple(f"{o}=" for o in GLOBAL_OPTIONS)):
            at += 1
        elif token.startswith("-"):
            return list(argv), None, []  # --help, --version, or a mistake: argparse says
        else:
            return list(argv[:at]), token, list(argv[at + 1:])
    return list(argv), None, []


# -- running a command ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, prog: str = "pgsaga") -> int:
    """Run the command *argv* (default: the process' arguments); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    before, command, after = split_command(argv)
    if command == "worker":  # its own parser; the global options go along
        from .. import worker  # not before: the admin commands need none of it

        return worker.main([*after, *before], prog=f"{prog} worker")
    try:
        args = build_parser(prog).parse_args(argv)
        check_usage(args)
    except SystemExit as e:  # usage errors, --help, --version
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        dsn, args.schema = database_of(args)
    except ValueError as e:
        fail(str(e))
        return EXIT_FAILED
    if not dsn:  # like the worker: a startup error, not a usage one
        fail("no database: pass --dsn or set SAGA_DSN")
        return EXIT_FAILED
    try:
        check_connection(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn, schema_required(args.schema):
            output = args.run(args, conn, dsn)
    except (CommandError, SagaException, ConnectionError, ValueError, TypeError) as e:
        fail(scrub(str(e), dsn))
        return EXIT_FAILED
    except psycopg.Error as e:
        fail(f"{type(e).__name__}: {scrub(first_line(e), dsn)}")
        return EXIT_FAILED
    if output:
        print(output, flush=True)
    return EXIT_OK


@contextmanager
def schema_required(schema: str) -> Iterator[None]:
    """Turn a missing table or column into the advice to migrate (this very schema)."""
    fix = f"run `python -m saga migrate --schema {schema}`"
    try:
        yield
    except psycopg.errors.UndefinedTable as e:
        raise CommandError(missing_tables(schema, str(e.diag.message_primary))) from e
    except psycopg.errors.UndefinedColumn as e:
        raise CommandError(
            f"the saga tables in schema {schema!r} are older than this pgsaga "
            f"({e.diag.message_primary}): {fix}") from e


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
