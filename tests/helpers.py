"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from saga import RunStats, Saga, Status

T = TypeVar("T")

FAR = 3600.0  # a delay no test waits for: rows delayed this long are made due by SQL


def poll(predicate: Callable[[], T], timeout: float, interval: float = 0.02) -> T | None:
    """Poll *predicate* until it returns something truthy, and return that (None at *timeout*).

    Never fails the test, so a step may call it from a worker thread.
    """
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
    return result


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll *predicate* until it returns something truthy, and return that.

    Fail the test after *timeout* seconds. This is the one place a test waits on a clock.
    """
    result = poll(predicate, timeout, interval)
    if not result:
        pytest.fail(f"not true within {timeout}s: {predicate!r}")
    return result


def seconds(later: Any, earlier: Any) -> float:
    """The seconds from *earlier* to *later* (datetimes)."""
    return float((later - earlier).total_seconds())


class Db:
    """The test's own autocommit connection, for plain SQL on its schema.

    `{s}` in a query is the schema (a literal brace is `{{`). The test and its steps'
    threads may share it: psycopg serialises the statements.
    """

    def __init__(self, dsn: str, schema: str) -> None:
        self.schema = schema
        self.conn = psycopg.connect(dsn, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def sql(self, query: str) -> sql.Composed:
        """*query* with `{s}` filled in, to run on another connection."""
        return sql.SQL(query).format(s=sql.Identifier(self.schema))  # type: ignore[arg-type]

    def execute(self, query: str, *params: object) -> int:
        """Run one statement; return its row count."""
        return self.conn.execute(self.sql(query), params).rowcount

    def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement; return its rows (none for a statement without a result)."""
        cur = self.conn.execute(self.sql(query), params)
        return cur.fetchall() if cur.description else []

    def one(self, query: str, *params: object) -> Any:
        """The value of a query that returns one row of one column."""
        [(value,)] = self.rows(query, *params)
        return value

    def record(self, query: str, *params: object) -> dict[str, Any] | None:
        """The first row of *query* as a dict (None if there is none)."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(self.sql(query), params).fetchone()

    def now(self) -> datetime:
        """The database's clock."""
        value: datetime = self.one("SELECT now()")
        return value

    def row(self, instance: str) -> dict[str, Any]:
        """The row of *instance* as a dict (input and state as JSON values); it must exist."""
        found = self.record("SELECT * FROM {s}.instance WHERE instance_id = %s", instance)
        assert found is not None, instance
        return found

    def statuses(self) -> dict[Status, int]:
        """How many instances are in each status."""
        rows = self.rows("SELECT status, count(*) FROM {s}.instance GROUP BY status")
        return {Status(status): n for status, n in rows}

    def make_due(self, instance: str) -> None:
        self.execute("UPDATE {s}.instance SET run_after = now() WHERE instance_id = %s", instance)

    def set_status(self, instance: str, status: Status, *, runner_id: str | None = None,
                   attempts: int | None = None) -> None:
        """Force *instance* into *status* (and *attempts*, if given)."""
        assert self.execute(
            "UPDATE {s}.instance SET status = %s, runner_id = %s, "
            "attempts = coalesce(%s, attempts) WHERE instance_id = %s",
            int(status), runner_id, attempts, instance) == 1

    def steal(self, instance: str) -> None:
        """Give a RUNNING row to another, live runner: the worker's lease is lost."""
        self.execute("INSERT INTO {s}.runner (id, hostname, pid, serves, expires_at) "
                     "VALUES ('thief', 'elsewhere', 1, '{{}}', now() + interval '1 hour') "
                     "ON CONFLICT DO NOTHING")
        self.execute("UPDATE {s}.instance SET runner_id = 'thief' WHERE instance_id = %s",
                     instance)

    def runner_ids(self) -> set[str]:
        return {r for (r,) in self.rows("SELECT id FROM {s}.runner")}

    def listeners(self) -> list[int]:
        """The backends LISTENing (idle, the LISTEN done) on the schema's channel."""
        return [pid for (pid,) in self.rows(
            "SELECT pid FROM pg_stat_activity WHERE state = 'idle' AND query = %s",
            f'LISTEN "pgsaga_{self.schema}"')]

    def events(self, instance: str) -> list[tuple[str, str, int]]:
        """The (step, event, pid) that the steps of tests/apps logged for *instance*."""
        return [(step, event, pid) for step, event, pid in self.rows(
            "SELECT step, event, pid FROM {s}.executed WHERE instance = %s ORDER BY at",
            instance)]


class LiveRun:
    """`saga.run(...)` in a thread, started once its runner row exists."""

    def __init__(self, saga: Saga, db: Db, **options: Any) -> None:
        self.saga = saga
        self.result: list[object] = []
        before = db.runner_ids()

        def target() -> None:
            try:
                self.result.append(saga.run(**options))
            except BaseException as e:  # reported by join()
                self.result.append(e)

        self.thread = threading.Thread(target=target, name="test-run", daemon=True)
        self.thread.start()
        wait_until(lambda: self.result or db.runner_ids() - before)
        assert not self.result, self.result

    def join(self) -> RunStats:
        self.thread.join(15.0)
        assert not self.thread.is_alive(), "run() did not return"
        assert isinstance(self.result[0], RunStats), self.result
        return self.result[0]


@contextmanager
def running(saga: Saga, db: Db, **options: Any) -> Iterator[LiveRun]:
    """Run *saga* (two workers unless told) for the `with` block, then stop it."""
    options.setdefault("workers", 2)
    live = LiveRun(saga, db, **options)
    try:
        yield live
    finally:
        saga.stop()
        live.thread.join(15.0)
    live.join()


# -- the API tests' saga ------------------------------------------------------------------


@dataclass
class TransferInput:
    amount: int
    to: str


@dataclass
class Account:
    balance: int


@dataclass
class Confirmation:
    ok: bool


class Registry:
    """A saga with three steps, the shape the API tests use."""

    def __init__(self, s: Saga) -> None:
        self.saga = s

        @s.step
        def debit(input: TransferInput, state: Account | None) -> None:
            pass

        @s.step
        def credit(input: TransferInput, state: Account | None) -> None:
            pass

        @s.step
        def webhook(input: Confirmation, state: Account | None) -> None:
            pass

        self.debit, self.credit, self.webhook = debit, credit, webhook
