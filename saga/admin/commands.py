"""The admin commands. Each takes the parsed arguments, an autocommit connection and
the DSN, and returns what to print (a table or JSON); it raises `CommandError` to exit 1.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Final

import psycopg

from ..migrate import migrate as apply_migrations
from ..records import Status
from ..schedules.store import ScheduleStore
from .output import (
    Progress,
    age,
    cell,
    jsonable_instance,
    note,
    one_line,
    pretty_json,
    record,
    status_name,
    table,
    to_json,
    utc,
    when,
)
from .queries import AdminStore, Conn, Filters, Row

Command = Callable[[argparse.Namespace, Conn, str], str]

LIST_COLUMNS = ("id", "saga", "instance", "step", "status", "attempts", "run_after",
                "updated_at", "error")


WATCH_INTERVAL: Final = 2.0  # seconds between two reports of `stats --watch`


class CommandError(Exception):
    """A command could not do what was asked (not found, a conflict): exit 1."""


# -- reading --------------------------------------------------------------------------------


def list_instances(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`list`: the instances that match, most recently updated first; errors cut short."""
    conn.read_only = True
    filters = Filters(saga=args.saga, step=args.step, older=args.older_than,
                      newer=args.newer_than, limit=args.limit,
                      statuses=None if args.status is None else [int(s) for s in args.status])
    found = AdminStore(args.schema).instances(conn, filters._replace(limit=args.limit + 1))
    rows = [{**row, "error": one_line(row["error"])} for row in found[:args.limit]]
    if len(found) > args.limit:  # one more than asked for: there are more
        note(f"(the {args.limit} most recently updated of more that match: raise --limit, "
             "or narrow with --saga, --status, --step, --older-than or --newer-than)")
    if args.json:
        return to_json([jsonable_instance(row) for row in rows])
    if not rows:
        return "no matching instances"
    return table(LIST_COLUMNS, [
        (r["id"], r["name"], r["instance_id"], r["step"], status_name(r["status"]),
         r["attempts"], r["run_after"], r["updated_at"], r["error"]) for r in rows])


def show(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`show`: every column of one instance, input and state as JSON, the error in full."""
    conn.read_only = True
    row = find_one(AdminStore(args.schema), conn, args.instance, args.saga, args.row_id)
    if args.json:
        return to_json(jsonable_instance(row))
    fields = []
    for key, value in jsonable_instance(row).items():
        if key in ("input", "state", "error", "status_code"):
            continue
        if key == "status":
            fields.append((key, f"{value} ({row['status']})"))
        elif isinstance(value, datetime):
            fields.append((key, utc(value).isoformat()))  # to the microsecond, unlike cell()
        else:
            fields.append((key, cell(value)))
    return record([*fields, ("input", pretty_json(row["input"])),
                   ("state", pretty_json(row["state"])),
                   ("error", (row["error"] or "-").rstrip())])


def find_one(store: AdminStore, conn: Conn, instance: str | None, saga: str | None,
             row_id: int | None) -> Row:
    """The instance named by its id (and saga), or by its row id; raise `CommandError`
    when there is none, or when its id is ambiguous across sagas."""
    if row_id is not None:
        found = store.by_id(conn, row_id)
        if found is None:
            raise CommandError(f"no instance has row id {row_id}")
        return found
    assert instance is not None
    rows = store.find(conn, instance, saga)
    if not rows:
        where = f"saga {saga!r}" if saga else "any saga"
        raise CommandError(f"no instance {instance!r} in {where}")
    if len(rows) > 1:
        sagas = ", ".join(r["name"] for r in rows)
        raise CommandError(f"instance {instance!r} exists in several sagas ({sagas}): "
                           "pass --saga NAME")
    return rows[0]


def stats(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`stats`: counts, backlog and lag per saga, the runners, the orphaned due rows
    (due rows of a step that no live runner serves) and the overdue schedules, all from
    one snapshot; with
    --watch or --interval, again every interval until Ctrl-C (or --count times)."""
    conn.read_only = True
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    if args.interval is None and not args.watch:
        return stats_once(args, conn)
    interval = args.interval or WATCH_INTERVAL
    terminal = sys.stdout.isatty()
    shown = 0
    try:
        while True:
            text = stats_once(args, conn, compact=args.json)
            if terminal and not args.json:  # redraw in place, like `watch`
                sys.stdout.write("\x1b[H\x1b[2J")
            if not args.json:
                text = (f"every {interval:g}s, {when(datetime.now(timezone.utc))} "
                        f"(Ctrl-C to stop)\n\n{text}\n")
            print(text, flush=True)
            shown += 1
            if args.count is not None and shown >= args.count:
                return ""
            threading.Event().wait(interval)
    except KeyboardInterrupt:
        return ""


def stats_once(args: argparse.Namespace, conn: Conn, *, compact: bool = False) -> str:
    """One `stats` report, from one snapshot: tables, or JSON (on one line if *compact*,
    for the JSON lines of --watch)."""
    with conn.transaction():
        found = AdminStore(args.schema).stats(conn)
        overdue = [{"saga": s, "schedule": n, "next_tick": t, "overdue_seconds": o}
                   for s, n, t, o in ScheduleStore(args.schema).overdue(conn)]
    sagas: dict[str, dict[str, Any]] = {}
    for name, status, count in found.counts:
        entry = sagas.setdefault(name, {"saga": name, **{s.name.lower(): 0 for s in Status},
                                        "total": 0, "due": 0, "lag_seconds": None})
        entry[status_name(status)] = count
        entry["total"] += count
    for name, due, lag in found.backlog:
        sagas[name].update(due=due, lag_seconds=lag)
    runners = [{**r, "heartbeat_age_seconds": r.pop("heartbeat_age")} for r in found.runners]
    orphaned = [{"saga": n, "step": step, "due": due, "lag_seconds": lag}
                for n, step, due, lag in found.orphaned]
    limits = [{"saga": n, "limit": limit, "in_use": used, "waiting": waiting}
              for n, limit, used, waiting in found.limits]
    if args.json:
        return to_json({"sagas": list(sagas.values()), "runners": runners,
                        "orphaned": orphaned, "overdue_schedules": overdue, "limits": limits},
                       indent=None if compact else 2)
    return "\n\n".join(stats_tables(list(sagas.values()), runners, orphaned, overdue, limits))


def stats_tables(sagas: list[dict[str, Any]], runners: list[Row],
                 orphaned: list[dict[str, Any]],
                 overdue: list[dict[str, Any]] | None = None,
                 limits: list[dict[str, Any]] | None = None) -> list[str]:
    """The sections of `stats` for people."""
    names = [s.name.lower() for s in Status]
    sections = ["instances\n" + (table(
        ["saga", *names, "total", "due", "lag"],
        [[s["saga"], *(s[n] for n in names), s["total"], s["due"], age(s["lag_seconds"])]
         for s in sagas]) if sagas else "none")]
    sections.append("runners\n" + (table(
        ["id", "host", "pid", "heartbeat", "live", "serves"],
        [[r["id"], r["hostname"], r["pid"], age(r["heartbeat_age_seconds"]) + " ago",
          r["live"], "; ".join(f"{saga}: {', '.join(steps)}"
                               for saga, steps in sorted(r["serves"].items()))]
         for r in runners]) if runners else "none"))
    sections.append("orphaned due rows (no live runner serves their step)\n" + (table(
        ["saga", "step", "due", "lag"],
        [[o["saga"], o["step"], o["due"], age(o["lag_seconds"])] for o in orphaned])
        if orphaned else "none"))
    sections.append("overdue schedules (later than their maximum lateness)\n" + (table(
        ["saga", "schedule", "next_tick", "overdue"],
        [[o["saga"], o["schedule"], when(o["next_tick"]), age(o["overdue_seconds"])]
         for o in overdue]) if overdue else "none"))
    if limits:  # only where some saga declares limits
        sections.append("limits (a rate's slots in use: the starts in its window)\n" + table(
            ["saga", "limit", "in use", "waiting"],
            [[x["saga"], x["limit"], x["in_use"], x["waiting"]] for x in limits]))
    return sections


# -- maintenance ----------------------------------------------------------------------------


def purge(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`purge`: delete finished instances updated before the cutoff, one short
    transaction per batch (the connection autocommits), so no lock is held for long."""
    store = AdminStore(args.schema)
    codes = [int(s) for s in args.status]
    cutoff = store.purge_cutoff(conn, args.older_than)
    if args.dry_run:
        count = store.purge_count(conn, codes, cutoff, args.saga)
    else:
        count = after = 0
        progress = Progress()
        try:
            while True:
                deleted, after = store.purge_batch(conn, codes, cutoff, args.saga,
                                                   args.batch, after)
                count += deleted
                progress.update(f"deleted {count} instance(s)...")
                if deleted < args.batch:  # the end: what is left is locked by others
                    break
        except KeyboardInterrupt:
            raise CommandError(f"interrupted: {count} instance(s) deleted before") from None
        finally:
            progress.done()
    names = [s.name.lower() for s in args.status]
    if args.json:
        return to_json({"count": count, "dry_run": args.dry_run, "statuses": names,
                        "saga": args.saga, "cutoff": cutoff})
    verb = "would delete" if args.dry_run else "deleted"
    scope = f" of saga {args.saga!r}" if args.saga else ""
    return (f"{verb} {count} instance(s){scope} ({', '.join(names)}) "
            f"updated before {when(cutoff)}")


def migrate(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`migrate`: create or upgrade the schema; print what was applied."""
    applied = apply_migrations(conn, args.schema)
    return "\n".join([*(f"applied {name}" for name in applied),
                      f"schema {args.schema} is up to date"])
