"""`ScheduleStore`: the queries of `sql/schedules.sql`.

Like `saga.store.Store`, every method takes a connection and never commits: the ticker
claims and advances rows in one transaction of its own making.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from hashlib import md5
from typing import Any, NamedTuple

import psycopg
from psycopg import Cursor
from psycopg.rows import dict_row, tuple_row

from ..sqlfiles import check_schema, named_queries, render
from .spec import Schedule

Conn = psycopg.Connection[Any]


class Due(NamedTuple):
    """A schedule row the ticker has just locked."""

    name: str
    next_tick: datetime | None
    last_tick: datetime | None
    now: datetime  # the database's clock, for this tick
    last_status: int | None  # of the last tick's instance; None if none (or purged)


class Tick(NamedTuple):
    """A tick to create: when, its instance id, and its encoded input."""

    at: datetime
    instance: str
    input: str


class Move(NamedTuple):
    """What one claimed row becomes: the ticks to create, and the row's new state."""

    schedule: Schedule
    ticks: list[Tick]
    next_tick: datetime
    skipped: int
    error: str | None = None


class ScheduleStore:
    """The schedule queries of one schema, rendered once."""

    def __init__(self, schema: str) -> None:
        self.schema = check_schema(schema)
        self.channel = f"pgsaga_{schema}"  # the workers' wake-up, as saga.store sends it
        self._q = {name: render(text, schema)
                   for name, text in named_queries("schedules.sql").items()}
        self._params: dict[tuple[int, ...], dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"<ScheduleStore schema={self.schema!r}>"

    def _run(self, conn: Conn, query: str, params: Mapping[str, object]) -> Cursor[Any]:
        return conn.cursor(row_factory=tuple_row).execute(self._q[query], params)

    def _ours(self, schedules: Sequence[Schedule]) -> dict[str, str]:
        """The names of *schedules* and the md5 digests of their definitions, as two
        text[] literals made once: an idle ticker sends the same ones every second, and
        having psycopg escape thousands of strings each time would be most of its cost."""
        key = tuple(id(s) for s in schedules)
        found = self._params.get(key)
        if found is None:
            found = self._params[key] = {
                "names": array_literal([s.name for s in schedules]),
                "digests": array_literal([md5(s.definition.encode()).hexdigest()
                                          for s in schedules])}
        return found

    def declare(self, conn: Conn, saga: str, schedules: Sequence[Schedule]) -> None:
        """Record *schedules* as all that saga *saga* declares (see `declare_schedules`)."""
        ordered = sorted(schedules, key=lambda s: s.name)  # one lock order for everyone
        self._run(conn, "declare_schedules", {
            "saga": saga, "names": [s.name for s in ordered],
            "definitions": [s.definition for s in ordered], "steps": [s.step for s in ordered],
            "expressions": [s.expression for s in ordered], "zones": [s.tz for s in ordered],
            "lateness": [s.max_lateness.total_seconds() for s in ordered],
        })

    def stored(self, conn: Conn, saga: str) -> list[str]:
        """The names of saga *saga*'s schedules that are not retired."""
        return [name for (name,) in self._run(conn, "stored_schedules", {"saga": saga})]

    def retire(self, conn: Conn, saga: str, keep: Sequence[str] = ()) -> list[str]:
        """Retire saga *saga*'s schedules not named in *keep*; return their names."""
        return [name for (name,) in self._run(conn, "retire_schedules",
                                              {"saga": saga, "names": list(keep)})]

    def claim(self, conn: Conn, saga: str, schedules: Sequence[Schedule],
              limit: int) -> list[Due]:
        """Lock up to *limit* due rows of *schedules* (inside the caller's transaction)."""
        rows = self._run(conn, "claim_schedules", {
            "saga": saga, **self._ours(schedules), "limit": limit}).fetchall()
        return [Due(*row) for row in rows]

    def advance(self, conn: Conn, saga: str, moves: Sequence[Move]) -> set[str]:
        """Create the tick instances of *moves* and move their rows on, in one statement;
        return the instance ids created (an id that existed is not)."""
        made = [(m.schedule, tick) for m in moves for tick in m.ticks]
        row = self._run(conn, "advance_schedules", {
            "saga": saga, "channel": self.channel,
            "schedules": [s.name for s, _ in made], "steps": [s.step for s, _ in made],
            "instances": [t.instance for _, t in made], "inputs": [t.input for _, t in made],
            "names": [m.schedule.name for m in moves],
            "next_ticks": [m.next_tick for m in moves],
            "last_ticks": [m.ticks[-1].at if m.ticks else None for m in moves],
            "last_instances": [m.ticks[-1].instance if m.ticks else None for m in moves],
            "skipped": [m.skipped for m in moves], "errors": [m.error for m in moves],
        }).fetchone()
        assert row is not None
        return set(row[0])

    def next_due(self, conn: Conn, saga: str, schedules: Sequence[Schedule]) -> float | None:
        """Seconds until the earliest of *schedules* is due (<= 0: now), None if none is."""
        row = self._run(conn, "next_schedule_due", {"saga": saga, **self._ours(schedules)},
                        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- control and reports ------------------------------------------------------------

    def pause(self, conn: Conn, saga: str, name: str) -> bool:
        """Pause a schedule; False if there is no such schedule."""
        return self._run(conn, "pause_schedule", {"saga": saga, "name": name}
                         ).fetchone() is not None

    def resume(self, conn: Conn, saga: str, name: str) -> bool:
        """Resume a schedule from now on; False if there is no such schedule."""
        return self._run(conn, "resume_schedule", {"saga": saga, "name": name}
                         ).fetchone() is not None

    def steer(self, conn: Conn, saga: str, name: str, *, pause: bool,
              declared: Sequence[Schedule] = ()) -> bool:
        """Pause or resume; False if there is no such schedule. One that *declared*
        (all the saga's schedules, as this process declares them) holds but no ticker
        has recorded yet is recorded first, so that it can be paused before it ever ran.
        """
        act = self.pause if pause else self.resume
        if act(conn, saga, name):
            return True
        if not any(s.name == name for s in declared):
            return False
        self.declare(conn, saga, declared)
        return act(conn, saga, name)

    def find(self, conn: Conn, name: str, saga: str | None) -> list[tuple[str, str]]:
        """The (saga, name) of the schedules called *name* (in saga *saga*, if given)."""
        return [(s, n) for s, n in self._run(conn, "find_schedules",
                                              {"name": name, "saga": saga})]

    def rows(self, conn: Conn, saga: str | None = None) -> list[dict[str, Any]]:
        """Every schedule (of *saga*, if given), with its last instance's status."""
        cur = conn.cursor(row_factory=dict_row)
        return cur.execute(self._q["list_schedules"], {"saga": saga}).fetchall()

    def overdue(self, conn: Conn) -> list[tuple[str, str, datetime, float]]:
        """(saga, name, next tick, seconds overdue) of the active schedules overdue by
        more than their maximum lateness."""
        return [(s, n, t, float(o)) for s, n, t, o in self._run(conn, "overdue_schedules", {})]


def array_literal(items: Sequence[str]) -> str:
    """A PostgreSQL text[] literal of *items* (every element quoted, so none is NULL)."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"
