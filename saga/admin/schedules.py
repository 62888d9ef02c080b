"""The admin commands about schedules: `schedules`, `pause` and `resume` (`stats`
reports the overdue ones, in saga.admin.commands)."""

from __future__ import annotations

import argparse
from typing import Any

from ..schedules.store import ScheduleStore
from .arguments import saga_name
from .commands import CommandError
from .output import age, status_name, table, to_json, when
from .queries import Conn

COLUMNS = ("saga", "schedule", "step", "timing", "next_tick", "last_tick", "last_status",
           "state", "ticks", "skipped")


def list_arguments(cmd: argparse.ArgumentParser) -> None:
    """The options of `schedules`."""
    cmd.add_argument("--saga", type=saga_name, help="only this saga's schedules")


def steer_arguments(cmd: argparse.ArgumentParser) -> None:
    """The arguments of `pause` and `resume`."""
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
