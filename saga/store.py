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
from typing import Any, Final, NamedTuple

import psycopg
from psycopg import Cursor, sql
from psycopg.rows import tuple_row

from .errors import SagaException
from .outcomes import Complete, Continue, Fail, Retry, Transition
from .sqlfiles import check_schema, named_queries, render

Conn = psycopg.Connection[Any]

FIXED_QUERIES: Final = 256  # claim, next_due and folded texts kept per store


class Claimed(NamedTuple):
    """A row this runner has just claimed (input and state still JSON text)."""

    id: int
    instance: str
    step: str
    input: str | None
    state: str | None
    attempt: int
    trace: str | None = None  # the trace context (see saga.telemetry.context), 007
    key: str | None = None  # the concurrency key (filled in by a limited claim)


class Claim(NamedTuple):
    """What a claim asks for: due rows of these steps of saga *name*, at most *limit*;
    within *limits* (`SagaSpec.limits_json`, None: none), visiting keys from the one
    after *after* (the last key this thread claimed)."""

    runner_id: str
    name: str
    steps: Sequence[str]
    limit: int
    limits: str | None = None
    after: str | None = None


class Found(NamedTuple):
    """What a combined claim found: rows, or (when none) seconds until one is due."""

    rows: list[Claimed]
    due_in: float | None


class Lease(NamedTuple):
    """Who holds a RUNNING row, and for which claim: the guard of every write to it."""

    id: int
    runner_id: str
    attempt: int


def missing_tables(schema: str, detail: str, *, api: bool = False) -> str:
    """The one message for "the saga tables are not there": what is missing, and the
    exact command that creates them (`saga.init_db()` too, when said to the API)."""
    fix = f"`python -m saga migrate --schema {schema}`"
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
        self._q.update(named_queries("session.sql"))
        # The claim, with next_due folded in; and each outcome that ends a thread's hold
        # on an instance, with the claim of what it runs next folded in. One statement,
        # one transaction instead of two (see _fold). Missing if the texts do not fit.
        self._folded = {name for name in (None, "complete", "schedule", "fail")
                        if _fold(self._q, name) is not None}
        # The claim and next_due texts of each (query, saga, steps, limit), see `_fixed`.
        self._fixed_q: dict[tuple[str, str, tuple[str, ...], int], str] = {}

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
        input: str, state: str | None, delay: float, trace: str | None = None,
        key: str | None = None,
    ) -> bool:
        """Create a PENDING instance; False if (name, instance) exists already.

        *trace* is the caller's W3C traceparent, kept for the worker's step spans.
        """
        row = self._run(conn, "insert_instance", {
            "name": name, "instance": instance, "step": step, "input": input,
            "state": state, "delay": delay, "channel": self.channel, "trace": trace,
            "key": key,
        }).fetchone()
        return row is not None

    def call(self, conn: Conn, name: str, instance: str, step: str, input: str,
             delay: float, trace: str | None = None) -> bool:
        """Set the next step of a PENDING instance; False if none is PENDING."""
        row = self._run(conn, "call_instance", {
            "name": name, "instance": instance, "step": step, "input": input,
            "delay": delay, "channel": self.channel, "trace": trace,
        }).fetchone()
        return row is not None

    def insert_many(
        self, conn: Conn, name: str, step: str, instances: Sequence[str],
        inputs: Sequence[str], state: str | None, delay: float, trace: str | None = None,
        keys: Sequence[str] | None = None,
    ) -> set[str]:
        """Create PENDING instances in one statement; return the instance ids created.
        *keys*, if given, holds each instance's concurrency key."""
        row = self._run(conn, "insert_many", {
            "name": name, "step": step, "instances": list(instances), "inputs": list(inputs),
            "state": state, "delay": delay, "channel": self.channel, "trace": trace,
            "keys": None if keys is None else list(keys),
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
        query = self.fixed_query("claim_due", name, steps, limit)
        rows = conn.cursor(row_factory=tuple_row).execute(
            query, {"runner_id": runner_id, "now": now}).fetchall()
        return [Claimed(*row) for row in rows]

    def claim_or_due(self, conn: Conn, claim: Claim) -> Found:
        """Claim like `claim`; when nothing is claimed, say in how many seconds the
        earliest PENDING row of these steps is due (`next_due`), in the same statement.
        With limits, the claim is `claim_limited`'s, which says when to look again."""
        if claim.limits is not None:
            return self.claim_limited(conn, claim)
        if None not in self._folded:
            rows = self.claim(conn, claim.runner_id, claim.name, claim.steps, claim.limit)
            return Found(rows, None if rows else self.next_due(conn, claim.name,
                                                                         claim.steps))
        _, found = self._folded_run(conn, None, claim, {})
        return found

    def folded_queries(self, name: str, steps: Sequence[str],
                       limit: int = 1) -> dict[str, str]:
        """The folded statements for saga *name*'s *steps*, by the names reports give
        them: `claim_or_due`, and `complete+claim`, `schedule+claim`, `fail+claim`."""
        claim = Claim("", name, steps, limit)
        return {("claim_or_due" if q is None else f"{q}+claim"): self._folded_text(q, claim)
                for q in sorted(self._folded, key=str)}

    def _folded_text(self, query: str | None, claim: Claim) -> str:
        """The folded statement of *query* for *claim*, made of the fixed texts of the
        claim and next_due (see `fixed_query`), kept like them."""
        key = (f"folded:{query}", claim.name, tuple(claim.steps), claim.limit)
        text = self._fixed_q.get(key)
        if text is None:
            parts = {"claim_due": self.fixed_query("claim_due", claim.name, claim.steps,
                                                   claim.limit),
                     "next_due": self.fixed_query("next_due", claim.name, claim.steps)}
            if query is not None:
                parts[query] = self._q[query]
            text = _fold(parts, query)
            assert text is not None  # the shapes were checked in __init__
            if len(self._fixed_q) < FIXED_QUERIES:
                self._fixed_q[key] = text
        return text

    def _folded_run(self, conn: Conn, query: str | None, claim: Claim,
                    params: Mapping[str, object]) -> tuple[int | None, Found]:
        rows = conn.cursor(row_factory=tuple_row).execute(self._folded_text(query, claim), {
            **params, "runner_id": claim.runner_id, "name": claim.name,
            "steps": list(claim.steps), "limit": claim.limit, "now": None,
        }).fetchall()
        status: int | None = None
        claimed: list[Claimed] = []
        due_in: float | None = None
        for kind, row_status, *columns, due in rows:
            if kind == 0:
                status = int(row_status)
            elif kind == 1:
                claimed.append(Claimed(*columns))
            elif due is not None:
                due_in = float(due)
        return status, Found(claimed, due_in)

    def claim_limited(self, conn: Conn, claim: Claim) -> Found:
        """Claim within the claim's limits (`sql/008_limits.sql`). The function takes
        several statements, each with its own snapshot, so it needs a transaction of its
        own (on an autocommit connection, one round trip all the same)."""
        params = {"runner_id": claim.runner_id, "name": claim.name,
                  "steps": list(claim.steps), "limit": claim.limit,
                  "limits": claim.limits, "after": claim.after}
        rows = self._run(conn, "claim_limited", params).fetchall()
        claimed = [Claimed(id_, instance, step, input, state, attempts, trace, key)
                   for kind, id_, instance, step, input, state, attempts, key, trace, _ in rows
                   if kind == 1]
        due = next((row[9] for row in rows if row[0] == 2), None)
        return Found(claimed, None if due is None else float(due))

    def limit_usage(self, conn: Conn, name: str,
                    limits: str) -> list[tuple[str, int, int]]:
        """(limit id, slots in use, due rows waiting) for each of *limits* (as JSON)."""
        return [(lim, int(used), int(waiting)) for lim, used, waiting in self._run(
            conn, "limit_usage", {"name": name, "limits": limits}).fetchall()]

    def next_due(self, conn: Conn, name: str, steps: Sequence[str]) -> float | None:
        """Seconds until the earliest PENDING row of these steps is due; None if none."""
        query = self.fixed_query("next_due", name, steps)
        row = conn.cursor(row_factory=tuple_row).execute(query).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def fixed_query(self, query: str, name: str, steps: Sequence[str], limit: int = 1) -> str:
        """The text of *query* (claim_due or next_due) with the saga *name*, its *steps* and
        the *limit* written in as constants; the runner id and `now` stay parameters.

        They are the same on every call of one worker, and as constants they let the
        server's cached generic plan stick: with `limit` a parameter, the generic plan is
        costed for a tenth of the due rows, and with `steps` one for ten steps, so the
        server planned every claim afresh (as long again as running it). Written in, the
        generic plan costs what a custom one does, and wins by the planning it saves.
        """
        key = (query, name, tuple(steps), limit)
        text = self._fixed_q.get(key)
        if text is None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
            text = self._q[query]
            for param, value in (("name", name), ("steps", list(steps)), ("limit", limit)):
                # A literal's own % would read as a placeholder: double it.
                literal = sql.Literal(value).as_string(None).replace("%", "%%")
                text = text.replace(f"%({param})s", literal)
            if len(self._fixed_q) < FIXED_QUERIES:  # a bound, should names be made up
                self._fixed_q[key] = text
        return text

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

    def apply_and_claim(self, conn: Conn, lease: Lease, transition: Transition,
                        claim: Claim) -> tuple[int | None, Found]:
        """`apply` a transition that ends this thread's hold on the row (anything but an
        undelayed `Continue`) and `claim_or_due` what to run next, in one statement.

        The claim is made even when the lease was lost (status None): its rows are
        this runner's to run either way.
        """
        match transition:
            case Continue(step, input, state, delay) if "schedule" in self._folded:
                query, params = "schedule", {"step": step, "input": input, "state": state,
                                             "delay": delay}
            case Complete(state) if "complete" in self._folded:
                query, params = "complete", {"state": state}
            case Retry(error, delay) if "fail" in self._folded:
                query, params = "fail", {"status": 0, "error": _no_nul(error), "delay": delay}
            case Fail(error) if "fail" in self._folded:
                query, params = "fail", {"status": 3, "error": _no_nul(error), "delay": 0.0}
            case _:
                status = self.apply(conn, lease, transition, run_on=False)
                return status, self.claim_or_due(conn, claim)
        return self._folded_run(conn, query, claim, {
            "id": lease.id, "attempt": lease.attempt, "channel": self.channel,
            "done_channel": self.done_channel, **params})

    def complete(self, conn: Conn, lease: Lease, state: str | None) -> int | None:
        return self._transition(conn, "complete", lease, state=state)

    def fail(self, conn: Conn, lease: Lease, *, error: str, final: bool,
             delay: float) -> int | None:
        return self._transition(conn, "fail", lease, status=3 if final else 0,
                                error=_no_nul(error),
                                delay=delay)

    def _transition(self, conn: Conn, query: str, lease: Lease, **params: object) -> int | None:
        row = self._run(conn, query, {
            "id": lease.id, "runner_id": lease.runner_id, "attempt": lease.attempt,
            "channel": self.channel, "done_channel": self.done_channel, **params,
        }).fetchone()
        return None if row is None else int(row[0])

    def plan_generically(self, conn: Conn) -> None:
        """Make *conn* (a worker thread's own) use generic plans: see `plan_generically`."""
        self._run(conn, "plan_generically", {})

    def plan_as_usual(self, conn: Conn, *, here: bool = False) -> None:
        """Undo `plan_generically`; *here*: only until the end of the open transaction."""
        self._run(conn, "plan_as_usual_here" if here else "plan_as_usual", {})

    def release(self, conn: Conn, runner_id: str, ids: Sequence[int]) -> None:
        """Hand back claimed rows whose step never started."""
        self._run(conn, "release", {"ids": list(ids), "runner_id": runner_id,
                                    "channel": self.channel, "done_channel": self.done_channel})

    # -- runners ------------------------------------------------------------------------

    def register_runner(self, conn: Conn, runner_id: str, hostname: str, pid: int,
                        serves: dict[str, list[str]], timeout: float,
                        limits: Mapping[str, str] | None = None) -> None:
        """Insert (or refresh) the runner row; it expires after *timeout* seconds of
        silence. *limits* maps saga names to their limits (as JSON), shown by `stats`."""
        self._run(conn, "register_runner", {
            "id": runner_id, "hostname": hostname, "pid": pid, "serves": json.dumps(serves),
            "timeout": timeout,
            "limits": json.dumps({name: json.loads(text) for name, text in
                                  (limits or {}).items()}),
        })

    def heartbeat(self, conn: Conn, runner_id: str, timeout: float) -> bool:
        """Push this runner's expiry *timeout* seconds ahead; False if it was reaped."""
        return self._run(conn, "heartbeat", {"id": runner_id, "timeout": timeout}).rowcount > 0

    def set_idle(self, conn: Conn, runner_id: str, idle: bool) -> bool:
        """Say whether the runner has a worker thread waiting for work; the API sends its
        NOTIFY only while some runner is idle (a new runner row is). Return whether the
        flag changed.

        Publish idle *before* the last claim ahead of a sleep, so that a start which saw
        the runner busy has its row found by that claim (see `set_runner_idle`).
        """
        return self._run(conn, "set_runner_idle", {"id": runner_id, "idle": idle}).rowcount > 0

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


def _no_nul(error: str) -> str:
    return error.replace("\x00", "\\x00")  # text columns cannot hold NUL


def _fold(queries: Mapping[str, str], outcome: str | None) -> str | None:
    """One statement made of the outcome query *outcome* (None: none), `claim_due` and
    `next_due`: its rows are (0, status) for the outcome, (1, the claimed columns) for
    each row claimed, and (2, seconds until due) when nothing was claimed.

    Every sub-statement sees the snapshot taken when the statement began: the claim
    cannot take the row the outcome writes (RUNNING in that snapshot), and next_due
    does not see it either (the caller takes the outcome's own delay into account).
    Data-modifying statements may only be top-level CTEs, so the outcome's CTEs are
    spliced in front. Return None when a text is not of the expected shape (a claim
    that is not one UPDATE, an outcome that is not WITH ... SELECT): the store then
    runs the statements one by one.
    """
    claim = queries["claim_due"].strip().rstrip(";")
    due = queries["next_due"].strip().rstrip(";")
    if not claim.upper().startswith("UPDATE") or not due.upper().startswith("SELECT"):
        return None
    ctes: sql.Composable = sql.SQL("")
    first = _NO_OUTCOME
    if outcome is not None:
        text = queries[outcome].strip().rstrip(";")
        head, sep, final = text.rpartition("\nSELECT ")
        if not sep or not head.upper().startswith("WITH "):
            return None
        ctes = _OUTCOME_CTES.format(sql.SQL(head[5:]), sql.SQL(final))
        first = _OUTCOME
    return _FOLDED.format(ctes=ctes, claim=sql.SQL(claim), first=first,
                          due=sql.SQL(due)).as_string(None)


# The pieces of a folded statement (see _fold): row kind 0 is the outcome's status, 1 a
# claimed row, 2 the seconds until the next due row when nothing was claimed.
_OUTCOME_CTES = sql.SQL("{},\noutcome(status, notified) AS (SELECT {}),\n")
# The trace column (007) is the last of a claimed row's: `NULL::text` before the float.
_OUTCOME = sql.SQL("SELECT 0, status::int, NULL::bigint, NULL::text, NULL::text, "
                   "NULL::text, NULL::text, NULL::int, NULL::text, NULL::float8 FROM outcome")
_NO_OUTCOME = sql.SQL("SELECT 0, NULL::int, NULL::bigint, NULL::text, NULL::text, "
                      "NULL::text, NULL::text, NULL::int, NULL::text, NULL::float8 WHERE false")
_FOLDED = sql.SQL(
    "WITH {ctes}claimed(id, instance_id, step, input, state, attempts, trace) AS (\n{claim})\n"
    "{first}\n"
    "UNION ALL\n"
    "SELECT 1, NULL, id, instance_id, step, input, state, attempts::int, trace, NULL\n"
    "  FROM claimed\n"
    "UNION ALL\n"
    "SELECT 2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ({due})\n"
    " WHERE NOT EXISTS (SELECT 1 FROM claimed)")
