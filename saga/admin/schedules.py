"""The admin commands about schedules: `schedules`, `pause`, `resume`, and the overdue
schedules that `stats` reports after its own sections."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ..schedules.store import ScheduleStore
from .commands import CommandError
from .commands import stats as instance_stats
from .output import age, status_name, table, to_json, when
from .queries import Conn

Add = Callable[..., argparse.ArgumentParser]

COLUMNS = ("saga", "schedule", "step", "timing", "next_tick", "last_tick", "last_status",
           "state", "ticks", "skipped")


def register(add: Add, saga_name: Callable[[str], str]) -> None:
    """Add the schedule commands to the CLI's parser (*add* is its subcommand adder)."""
    cmd = add("schedules", list_schedules, "list the schedules and their next and last ticks",
              "List every schedule: its saga and step, timing and zone, next tick, last tick "
              "and the status of that tick's instance, and whether it is paused, or "
              "retired (the code no longer declares it).")
    cmd.add_argument("--saga", type=saga_name, help="only this saga's schedules")
    for name, run, help, description in (
        ("pause", pause, "pause a schedule (no ticks until resumed)",
         "Pause a schedule: no tick is made until it is resumed; instances already made "
         "run on."),
        ("resume", resume, "resume a paused schedule from now on",
         "Resume a schedule: its next tick is computed from now (the ticks that fell while "
         "it was paused are not made)."),
    ):
        cmd = add(name, run, help, description)
        cmd.add_argument("schedule", help="the schedule's name")
        cmd.add_argument("--saga", type=saga_name,
                         help="its saga (needed when several sagas have a schedule so named)")


def list_schedules(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`schedules`: every schedule (of `--saga`), with its ticks and their instances."""
    conn.read_only = True
    rows = ScheduleStore(args.schema).rows(conn, args.saga)
    if args.json:
        return to_json([jsonable(r) for r in rows])
    if not rows:
        return "no schedules"
    return table(COLUMNS, [
        (r["saga"], r["name"], r["step"], f"{r['expression']} {r['tz']}", when(r["next_tick"]),
         when(r["last_tick"]), "-" if r["last_status"] is None else status_name(r["last_status"]),
         state(r), r["ticks"], r["skipped"]) for r in rows])


def state(row: dict[str, Any]) -> str:
    """retired, paused, overdue (later than its maximum lateness) or active."""
    if row["retired_at"] is not None:
        return "retired"
    if row["paused"]:
        return "paused"
    overdue = row["overdue"]
    if overdue is not None and overdue > row["max_lateness"]:
        return f"overdue {age(overdue)}"
    return "active"


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "last_status": None if row["last_status"] is None else
            status_name(row["last_status"]), "state": state(row)}


def pause(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`pause`: no ticks until `resume`."""
    return _steer(args, conn, pause=True)


def resume(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`resume`: ticks again from now on."""
    return _steer(args, conn, pause=False)


def _steer(args: argparse.Namespace, conn: Conn, *, pause: bool) -> str:
    store = ScheduleStore(args.schema)
    found = store.find(conn, args.schedule, args.saga)
    if not found:
        where = f"saga {args.saga!r}" if args.saga else "any saga"
        raise CommandError(f"no schedule {args.schedule!r} in {where}")
    if len(found) > 1:
        raise CommandError(f"schedule {args.schedule!r} exists in several sagas "
                           f"({', '.join(s for s, _ in found)}): pass --saga NAME")
    [(saga, name)] = found
    if not store.steer(conn, saga, name, pause=pause):
        raise CommandError(f"schedule {name!r} of saga {saga!r} is gone")
    verb = "paused" if pause else "resumed"
    if args.json:
        return to_json({"saga": saga, "schedule": name, "paused": pause})
    return f"schedule {name!r} of saga {saga!r} {verb}"


def stats(args: argparse.Namespace, conn: Conn, dsn: str) -> str:
    """`stats`, then the active schedules overdue by more than their maximum lateness:
    no ticker serves them (no worker runs their code, or none has run lately)."""
    shown = instance_stats(args, conn, dsn)
    overdue = ScheduleStore(args.schema).overdue(conn)
    if args.json:
        return to_json({**json.loads(shown), "overdue_schedules": [
            {"saga": s, "schedule": n, "next_tick": t, "overdue_seconds": o}
            for s, n, t, o in overdue]})
    return shown + "\n\noverdue schedules (later than their maximum lateness)\n" + (table(
        ["saga", "schedule", "next_tick", "overdue"],
        [[s, n, when(t), age(o)] for s, n, t, o in overdue]) if overdue else "none")

