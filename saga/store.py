"""The only module that runs saga's queries (from `sql/queries.sql`).

Every method takes a connection and never commits: the caller owns the transaction,
which is what lets `start(..., conn=c)` join a caller's transaction and a `conn` step
commit its own writes together with its outcome.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import Cursor
from psycopg.rows import tuple_row

from .errors import SagaException
from .outcomes import Complete, Continue, Fail, Retry, Transition
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


def missing_tables(schema: str, detail: str, *, api: bool = False) -> str:
    """The one message for "the saga tables are not there": what is missing, and the
    exact command that creates them (`saga.init_db()` too, when said to the API)."""
    fix = "`python -m saga migrate`"
    if api:
        fix = f"saga.init_db() or {fix}"
    return f"the saga tables are missing from schema {schema!r} ({detail}): run {fix}"


class Store:
    """The queries of one schema, rendered once."""

    def __init__(self, schema: str) -> None:
        self.schema = check_schema(schema)
        self.channel = f"pgsaga_{schema}"  # wakes the workers: something is due
        self.done_channel = f"pgsaga_{schema}_done"  # wakes wait(): an instance finished
        self._q = {name: render(text, schema) for name, text in named_queries().items()}

    def __repr__(self) -> str:
        return f"<Store schema={self.schema!r}>"

    def _run(self, conn: Conn, query: str, params: Mapping[str, object]) -> Cursor[Any]:
        # Tuple rows whatever row_factory the caller's connection or pool was given.
        return conn.cursor(row_factory=tuple_row).execute(self._q[query], params)

    @contextmanager
    def tables_required(self) -> Iterator[None]:
        """Turn "relation does not exist" into a message that says what to do."""
        try:
            yield
        except psycopg.errors.UndefinedTable as e:
            raise SagaException(missing_tables(self.schema, str(e.diag.message_primary),
                                               api=True)) from e

    # -- the API's side -----------------------------------------------------------------

    def insert(
        self, conn: Conn, name: str, instance: str, step: str,
        input: str, state: str | None, delay: float,
    ) -> bool:
        """Create a PENDING instance; False if (name, instance) exists already."""
        row = self._run(conn, "insert_instance", {
            "name": name, "instance": instance, "step": step, "input": input,
            "state": state, "delay": delay, "channel": self.channel,
        }).fetchone()
        return row is not None

    def call(self, conn: Conn, name: str, instance: str, step: str, input: str,
             delay: float) -> bool:
        """Set the next step of a PENDING instance; False if none is PENDING."""
        row = self._run(conn, "call_instance", {
            "name": name, "instance": instance, "step": step, "input": input,
            "delay": delay, "channel": self.channel,
        }).fetchone()
        return row is not None

    def insert_many(
        self, conn: Conn, name: str, step: str, instances: Sequence[str],
        inputs: Sequence[str], state: str | None, delay: float,
    ) -> set[str]:
        """Create PENDING instances in one statement; return the instance ids created."""
        row = self._run(conn, "insert_many", {
            "name": name, "step": step, "instances": list(instances), "inputs": list(inputs),
            "state": state, "delay": delay, "channel": self.channel,
        }).fetchone()
        return set(row[0]) if row else set()

    def cancel(self, conn: Conn, name: str, instance: str) -> int | None:
        """Cancel a PENDING instance, or flag a RUNNING one; return the status it had
        (None if it is not found or finished)."""
        row = self._run(conn, "cancel_instance", {
            "name": name, "instance": instance, "done_channel": self.done_channel,
        }).fetchone()
        return None if row is None else int(row[0])

    def retry(self, conn: Conn, name: str, instance: str) -> bool:
        """Send an ERROR instance back to PENDING; False if it is not in ERROR."""
        return self._run(conn, "retry_instance", {
            "name": name, "instance": instance, "channel": self.channel,
        }).fetchone() is not None

    def done_status(self, conn: Conn, name: str, instance: str) -> tuple[int, int] | None:
        """The row id and status of an instance, or None."""
        row = self._run(conn, "instance_done", {"name": name, "instance": instance}).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def status(self, conn: Conn, name: str, instance: str) -> tuple[int, bool] | None:
        """The instance's status, and whether a call's step is still to finish; or None."""
        row = self._run(conn, "instance_status", {"name": name, "instance": instance}).fetchone()
        return None if row is None else (int(row[0]), bool(row[1]))

    def get(self, conn: Conn, name: str, instance: str) -> tuple[Any, ...] | None:
        """The instance's columns, in `get_instance`'s order, or None."""
        return self._run(conn, "get_instance", {"name": name, "instance": instance}).fetchone()

    # -- the worker's side --------------------------------------------------------------

    def claim(self, conn: Conn, runner_id: str, name: str, steps: Sequence[str], limit: int,
              now: datetime | None = None) -> list[Claimed]:
        rows = self._run(conn, "claim_due", {
            "runner_id": runner_id, "name": name, "steps": list(steps), "limit": limit,
            "now": now,
        }).fetchall()
        return [Claimed(*row) for row in rows]

    def next_due(self, conn: Conn, name: str, steps: Sequence[str]) -> float | None:
        """Seconds until the earliest PENDING row of these steps is due; None if none."""
        row = self._run(conn, "next_due", {"name": name, "steps": list(steps)}).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # The transitions below are lease-guarded: each returns the row's new status, or None
    # if the lease was lost (nothing changed).

    def set_state(self, conn: Conn, lease: Lease, state: str) -> bool:
        cur = self._run(conn, "set_state", {**lease._asdict(), "state": state})
        return cur.rowcount > 0

    def run_on(self, conn: Conn, lease: Lease, step: str, input: str,
               state: str | None) -> int | None:
        """Go on with *step* at once on this runner: RUNNING, or CANCELLED if asked."""
        return self._transition(conn, "run_on", lease, step=step, input=input, state=state)

    def schedule(self, conn: Conn, lease: Lease, step: str, input: str, state: str | None,
                 delay: float) -> int | None:
        """Back to PENDING, due in *delay* seconds with *step* (or CANCELLED if asked)."""
        return self._transition(conn, "schedule", lease, step=step, input=input, state=state,
                                delay=delay)

    def apply(self, conn: Conn, lease: Lease, transition: Transition, *,
              run_on: bool = True) -> int | None:
        """Write *transition* under *lease*: the one way a step's outcome is recorded.

        A `Continue` without delay stays RUNNING on this runner when *run_on* (else it
        goes back to PENDING, due at once). Return the row's new status, or None if the
        lease was lost (nothing changed).
        """
        match transition:
            case Continue(step, input, state, delay) if delay == 0 and run_on:
                return self.run_on(conn, lease, step, input, state)
            case Continue(step, input, state, delay):
                return self.schedule(conn, lease, step, input, state, delay)
            case Complete(state):
                return self.complete(conn, lease, state)
            case Retry(error, delay):
                return self.fail(conn, lease, error=error, final=False, delay=delay)
            case Fail(error):
                return self.fail(conn, lease, error=error, final=True, delay=0.0)
        raise TypeError(f"not a transition: {transition!r}")  # pragma: no cover

    def complete(self, conn: Conn, lease: Lease, state: str | None) -> int | None:
        return self._transition(conn, "complete", lease, state=state)

    def fail(self, conn: Conn, lease: Lease, *, error: str, final: bool,
             delay: float) -> int | None:
        error = error.replace("\x00", "\\x00")  # text columns cannot hold NUL
        return self._transition(conn, "fail", lease, status=3 if final else 0, error=error,
                                delay=delay)

    def _transition(self, conn: Conn, query: str, lease: Lease, **params: object) -> int | None:
        row = self._run(conn, query, {
            "id": lease.id, "runner_id": lease.runner_id, "attempt": lease.attempt,
            "channel": self.channel, "done_channel": self.done_channel, **params,
        }).fetchone()
        return None if row is None else int(row[0])

    def release(self, conn: Conn, runner_id: str, ids: Sequence[int]) -> None:
        """Hand back claimed rows whose step never started."""
        self._run(conn, "release", {"ids": list(ids), "runner_id": runner_id,
                                    "channel": self.channel, "done_channel": self.done_channel})

    # -- runners ------------------------------------------------------------------------

    def register_runner(self, conn: Conn, runner_id: str, hostname: str, pid: int,
                        serves: dict[str, list[str]], timeout: float) -> None:
        """Insert (or refresh) the runner row; it expires after *timeout* seconds of silence."""
        self._run(conn, "register_runner", {
            "id": runner_id, "hostname": hostname, "pid": pid, "serves": json.dumps(serves),
            "timeout": timeout,
        })

    def heartbeat(self, conn: Conn, runner_id: str, timeout: float) -> bool:
        """Push this runner's expiry *timeout* seconds ahead; False if it was reaped."""
        return self._run(conn, "heartbeat", {"id": runner_id, "timeout": timeout}).rowcount > 0

    def delete_runner(self, conn: Conn, runner_id: str) -> None:
        self._run(conn, "delete_runner", {"id": runner_id})

    def reap(self, conn: Conn, *, runners: bool = True,
             margin: float = 0.0) -> tuple[list[str], int]:
        """Forget runners expired more than *margin* seconds ago (unless not *runners*),
        then recover the RUNNING rows of runners that are gone.

        Return the ids of the runners reaped and the number of rows recovered.
        """
        dead, recovered = self.reap_report(conn, runners=runners, margin=margin)
        return dead, len(recovered)

    def reap_report(self, conn: Conn, *, runners: bool = True,
                    margin: float = 0.0) -> tuple[list[str], list[tuple[str, str]]]:
        """`reap`, naming what it recovered: (saga, instance) of each row."""
        dead = ([r for (r,) in self._run(conn, "reap_runners", {"margin": margin})]
                if runners else [])
        rows = self._run(conn, "recover_orphans", {
            "channel": self.channel, "done_channel": self.done_channel}).fetchall()
        return dead, [(name, instance) for name, instances, _ in rows for instance in instances]

    def release_stale(self, conn: Conn, runner_id: str, in_flight: Sequence[int],
                      age: float) -> int:
        rows = self._run(conn, "release_stale", {
            "runner_id": runner_id, "in_flight": list(in_flight), "age": age,
            "channel": self.channel, "done_channel": self.done_channel,
        }).fetchall()
        return sum(n for _, n, _ in rows)
