"""The commands that change instances: start, call, retry (one, or every ERROR instance
that matches), cancel. Each goes through the `Saga` API on the command's connection, so
it behaves as the application's own calls do (checks, NOTIFY), and opens no pool.

The CLI knows no step types: an input is any JSON value, checked against the step's
annotations only when a worker decodes it (a misfit then ends the instance in ERROR).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..core import Saga
from ..errors import ConcurrencyException, SagaNotFound
from ..records import Status
from .commands import CommandError
from .output import Progress, age, jsonable_instance, to_json
from .queries import AdminStore, Conn, Filters

RETRY_BATCH = 500  # ERROR instances looked up at a time by a bulk retry


def saga_with_step(args: argparse.Namespace, dsn: str, step: str | None) -> Saga:
    """A `Saga` named *args.saga* with a stand-in step called *step*: the API checks a
    step name against the registered ones, and the CLI has no code of the application."""
    saga = Saga(args.saga, dsn, schema=args.schema)
    if step is not None:
        def stand_in(input: object) -> None:  # never run: only its name is used
            raise NotImplementedError
        stand_in.__name__ = stand_in.__qualname__ = step
        saga.step(stand_in)
    return saga


def start(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`start`: create an instance at a step, with a JSON input (and state)."""
    with saga_with_step(args, dsn, args.step) as saga:
        saga.start(args.instance, args.step, args.input, args.state, delay=args.delay,
                   conn=conn)  # DuplicateSaga: exit 1
    return _report(args, conn, "started")


def call(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`call`: make a step the next of a PENDING instance (e.g. to move an orphaned row
    to a step that a runner serves), with a JSON input or the one it has."""
    value = args.input
    if args.keep_input:
        rows = AdminStore(args.schema).find(conn, args.instance, args.saga)
        if not rows:
            raise SagaNotFound(f"saga {args.saga!r} has no instance {args.instance!r}")
        value = rows[0]["input"]
    with saga_with_step(args, dsn, args.step) as saga:
        saga.call(args.instance, args.step, value, delay=args.delay, conn=conn)
    return _report(args, conn, "called")


def retry(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`retry`: an ERROR instance goes back to PENDING at its step (`Saga.retry`); with
    --all, every ERROR instance that matches the filters."""
    if args.all:
        return retry_all(args, conn, dsn)
    return _steer(args, conn, dsn, Saga.retry)


def cancel(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`cancel`: a PENDING instance is CANCELLED, a RUNNING one at its step boundary
    (`Saga.cancel`)."""
    return _steer(args, conn, dsn, Saga.cancel)


def _steer(args: argparse.Namespace, conn: Conn, dsn: str,
           action: Callable[..., None]) -> str:
    """Run a `Saga` method on the instance, and report the row as it is then."""
    with Saga(args.saga, dsn, schema=args.schema) as saga, conn.transaction():
        action(saga, args.instance, conn=conn)  # SagaNotFound, ConcurrencyException: exit 1
    return _report(args, conn, None)


def _report(args: argparse.Namespace, conn: Conn, verb: str | None) -> str:
    [row] = AdminStore(args.schema).find(conn, args.instance, args.saga)
    if args.json:
        return to_json({key: value for key, value in jsonable_instance(row).items()
                        if key not in ("input", "state")})
    status = Status(row["status"])
    what = f"instance {args.instance!r} of saga {args.saga!r}"
    if status == Status.RUNNING and row.get("cancel_requested"):
        return f"{what}: cancel requested; its runner ends it at the step boundary"
    due = getattr(args, "delay", None)
    when = f", due in {age(due)}" if due else ""
    if verb:
        return f"{verb} {what}: {status.name} at step {row['step']!r}{when}"
    return f"{what} is now {status.name} at step {row['step']!r}"


def retry_all(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """Replay every matching ERROR instance, each with `Saga.retry` in a statement of its
    own (the connection autocommits): no lock is held for long, and an instance that
    changed meanwhile (retried by someone else) is skipped, not an error."""
    store = AdminStore(args.schema)
    filters = Filters(saga=args.saga, step=args.step, older=args.older_than,
                      newer=args.newer_than)
    sagas: dict[str, Saga] = {}
    progress = Progress()
    retried = skipped = after = 0
    try:
        while batch := store.error_instances(conn, filters, after, RETRY_BATCH):
            for row_id, name, instance in batch:
                after = row_id
                if args.dry_run:
                    retried += 1
                    continue
                saga = sagas.get(name) or sagas.setdefault(
                    name, Saga(name, dsn, schema=args.schema))
                try:
                    saga.retry(instance, conn=conn)
                    retried += 1
                except (ConcurrencyException, SagaNotFound):
                    skipped += 1
                progress.update(f"retried {retried} instance(s), skipped {skipped}...")
    except KeyboardInterrupt:
        progress.done()
        raise CommandError(f"interrupted: {retried} instance(s) retried before") from None
    finally:
        for saga in sagas.values():
            saga.close()
    progress.done()
    if args.json:
        return to_json({"count": retried, "skipped": skipped, "dry_run": args.dry_run,
                        "saga": args.saga, "step": args.step})
    verb = "would retry" if args.dry_run else "retried"
    scope = f" of saga {args.saga!r}" if args.saga else ""
    extra = f"; {skipped} changed meanwhile and were left as they are" if skipped else ""
    return f"{verb} {retried} ERROR instance(s){scope}{extra}"
