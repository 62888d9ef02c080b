"""The only module that runs saga's queries (from `sql/queries.sql`).

Every method takes a connection and never commits: the caller owns the transaction,
which is what lets `start(..., conn=c)` join a caller's transaction and a `conn` step
commit its own writes together with its outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

import psycopg

from .errors import SagaException
from .sqlfiles import check_schema, named_queries, render

Conn = psycopg.Connection[Any]


class Claimed(NamedTuple):
    """A row this runner has just claimed (input and state still JSON text)."""

    id: int
    instance: str
    step: str
    input: str | None
    state: str | None
    attempt: int


class Lease(NamedTuple):
    """Who holds a RUNNING row, and for which claim: the guard of every write to it."""

    id: int
    runner_id: str
    attempt: int


class Store:
    """The queries of one schema, rendered once."""

    def __init__(self, schema: str) -> None:
        self.schema = check_schema(schema)
        self.channel = f"pgsaga_{schema}"  # LISTEN/NOTIFY channel of this schema
        self._q = {name: render(text, schema) for name, text in named_queries().items()}

    def __repr__(self) -> str:
        return f"<Store schema={self.schema!r}>"

    @contextmanager
    def tables_required(self) -> Iterator[None]:
        """Turn "relation does not exist" into a message that says what to do."""
        try:
            yield
        except psycopg.errors.UndefinedTable as e:
            raise SagaException(
                f"the saga tables are missing from schema {self.schema!r} "
                f"({e.diag.message_primary}): run saga.init_db() or `python -m saga migrate`"
            ) from e

    # -- the API's side -----------------------------------------------------------------

    def insert(
        self, conn: Conn, name: str, instance: str, step: str,
        input: str, state: str | None, delay: float,
    ) -> bool:
        """Create a PENDING instance; False if (name, instance) exists already."""
        row = conn.execute(self._q["insert_instance"], {
            "name": name, "instance": instance, "step": step, "input": input,
            "state": state, "delay": delay, "channel": self.channel,
        }).fetchone()
        return row is not None

    def call(self, conn: Conn, name: str, instance: str, step: str, input: str,
             delay: float) -> bool:
        """Set the next step of a PENDING instance; False if none is PENDING."""
        row = conn.execute(self._q["call_instance"], {
            "name": name, "instance": instance, "step": step, "input": input,
            "delay": delay, "channel": self.channel,
        }).fetchone()
        return row is not None

    def status(self, conn: Conn, name: str, instance: str) -> int | None:
        row = conn.execute(self._q["instance_status"],
                           {"name": name, "instance": instance}).fetchone()
        return None if row is None else int(row[0])

    def get(self, conn: Conn, name: str, instance: str) -> tuple[Any, ...] | None:
        """The instance's columns, in `get_instance`'s order, or None."""
        return conn.execute(self._q["get_instance"],
                            {"name": name, "instance": instance}).fetchone()

    # -- the worker's side --------------------------------------------------------------

    def claim(self, conn: Conn, runner_id: str, name: str, steps: Sequence[str], limit: int,
              now: datetime | None = None) -> list[Claimed]:
        rows = conn.execute(self._q["claim_due"], {
            "runner_id": runner_id, "name": name, "steps": list(steps), "limit": limit,
            "now": now,
        }).fetchall()
        return [Claimed(*row) for row in rows]

    def next_due(self, conn: Conn, name: str, steps: Sequence[str]) -> float | None:
        """Seconds until the earliest PENDING row of these steps is due; None if none."""
        row = conn.execute(self._q["next_due"], {"name": name, "steps": list(steps)}).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def set_state(self, conn: Conn, lease: Lease, state: str) -> bool:
        return self._write(conn, "set_state", lease, state=state)

    def run_on(self, conn: Conn, lease: Lease, step: str, input: str, state: str | None) -> bool:
        return self._write(conn, "run_on", lease, step=step, input=input, state=state)

    def schedule(self, conn: Conn, lease: Lease, step: str, input: str, state: str | None,
                 delay: float) -> bool:
        return self._write(conn, "schedule", lease, step=step, input=input, state=state,
                           delay=delay, channel=self.channel)

    def complete(self, conn: Conn, lease: Lease, state: str | None) -> bool:
        return self._write(conn, "complete", lease, state=state)

    def fail(self, conn: Conn, lease: Lease, *, error: str, final: bool, delay: float) -> bool:
        return self._write(conn, "fail", lease, status=3 if final else 0, error=error,
                           delay=delay)

    def _write(self, conn: Conn, query: str, lease: Lease, **params: object) -> bool:
        """Run a lease-guarded write; False if the lease was lost (nothing changed)."""
        cur = conn.execute(self._q[query], {
            "id": lease.id, "runner_id": lease.runner_id, "attempt": lease.attempt, **params,
        })
        return cur.rowcount > 0

    def release(self, conn: Conn, runner_id: str, ids: Sequence[int]) -> None:
        """Hand back claimed rows whose step never started."""
        conn.execute(self._q["release"],
                     {"ids": list(ids), "runner_id": runner_id, "channel": self.channel})

    # -- runners ------------------------------------------------------------------------

    def register_runner(self, conn: Conn, runner_id: str, hostname: str, pid: int,
                        serves: dict[str, list[str]]) -> None:
        conn.execute(self._q["register_runner"], {
            "id": runner_id, "hostname": hostname, "pid": pid, "serves": json.dumps(serves),
        })

    def heartbeat(self, conn: Conn, runner_id: str) -> bool:
        """Refresh this runner's heartbeat; False if its row is gone (it was reaped)."""
        return conn.execute(self._q["heartbeat"], {"id": runner_id}).rowcount > 0

    def delete_runner(self, conn: Conn, runner_id: str) -> None:
        conn.execute(self._q["delete_runner"], {"id": runner_id})

    def reap(self, conn: Conn, timeout: float) -> tuple[list[str], int]:
        """Forget silent runners and recover RUNNING rows no live runner holds.

        Return the ids of the runners reaped and the number of rows recovered.
        """
        dead = [r for (r,) in conn.execute(self._q["reap_runners"], {"timeout": timeout})]
        rows = conn.execute(self._q["recover_orphans"],
                            {"timeout": timeout, "channel": self.channel}).fetchall()
        return dead, sum(n for _, n, _ in rows)

    def release_stale(self, conn: Conn, runner_id: str, in_flight: Sequence[int],
                      age: float) -> int:
        rows = conn.execute(self._q["release_stale"], {
            "runner_id": runner_id, "in_flight": list(in_flight), "age": age,
            "channel": self.channel,
        }).fetchall()
        return sum(n for _, n, _ in rows)
