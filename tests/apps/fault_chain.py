"""The "fault_chain" saga, for the worker processes of the fault-injection suite.

`python -m saga.worker tests.apps.fault_chain:saga --dsn ...` with SAGA_TEST_SCHEMA set
(and SAGA_TEST_LOG_DSN, if the step log must not go where `--dsn` goes).
A job goes `one` → `two` → `three`:

- `one` and `three` are plain steps: effects outside the database, at least once. Each
  run is logged into `{schema}.executed` on a connection of the step's own, committed at
  once, so a step run twice shows as two rows (the at-least-once cost).
- `two` takes `conn`: it logs its run the same way, and writes its *effect* into
  `{schema}.effect` through `conn`, in the transaction that records its outcome. The
  effect table has no unique key, so an effect committed twice would show as two rows
  rather than as a retried unique violation: exactly once is counted, not enforced.

`slow` and `busy` are single steps that last `input.pause` seconds (asleep, and holding
the CPU in Python), logging `start` and `done` around it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from saga import Saga

from . import LOG_TABLE, SCHEMA

EFFECT_TABLE = """
CREATE TABLE {schema}.effect (
    instance text        NOT NULL,
    pid      integer     NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""
LOG_PATIENCE = 30.0  # seconds a log write keeps trying through a database outage


@dataclass
class Job:
    """The input of every step: the instance id, and how long a long step lasts."""

    id: str
    pause: float = 0.0


def create_tables(conn: psycopg.Connection[Any], schema: str, *, effects: bool = True) -> None:
    """Create the `executed` log and (unless not *effects*) the `effect` table in *schema*
    (after `init_db()`)."""
    for ddl in (LOG_TABLE, EFFECT_TABLE) if effects else (LOG_TABLE,):
        conn.execute(sql.SQL(ddl).format(schema=sql.Identifier(schema)))


class StepLog:
    """Log step events on a connection per thread, reconnecting through outages.

    A log row is written before the step's effect, so it counts every run that got
    that far, including runs whose outcome was then lost.
    """

    def __init__(self, saga: Saga, schema: str) -> None:
        self.saga = saga
        self.insert = sql.SQL(
            "INSERT INTO {}.executed (instance, step, event, pid) VALUES (%s, %s, %s, %s)"
        ).format(sql.Identifier(schema))
        self._local = threading.local()

    def __call__(self, instance: str, step: str, event: str = "run") -> None:
        deadline = time.monotonic() + LOG_PATIENCE
        while True:
            try:
                conn = self._connection()
                conn.execute(self.insert, (instance, step, event, os.getpid()))
                return
            except psycopg.OperationalError:
                self._local.conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            if self.saga.dsn is None:
                raise RuntimeError("the saga has no DSN: the worker should have set one")
            # SAGA_TEST_LOG_DSN: the log is the tests' instrument and may bypass a pooler
            # that the saga goes through (a step that waits for a second server
            # connection while its `conn` holds one can starve a small pool).
            dsn = os.environ.get("SAGA_TEST_LOG_DSN") or self.saga.dsn
            conn = self._local.conn = psycopg.connect(dsn, autocommit=True,
                                                      connect_timeout=5)
        return conn


def build(schema: str, dsn: str | None = None) -> Saga:
    """The "fault_chain" saga on *schema*: quick retries, many attempts."""
    saga = Saga("fault_chain", dsn, schema=schema, max_attempts=100, backoff_base=0.1,
                backoff_max=1.0)
    log = StepLog(saga, schema)
    effect = sql.SQL("INSERT INTO {}.effect (instance, pid) VALUES (%s, %s)").format(
        sql.Identifier(schema))

    @saga.step
    def one(input: Job) -> object:
        log(input.id, "one")
        return two(input)

    @saga.step
    def two(input: Job, *, conn: psycopg.Connection[Any]) -> object:
        log(input.id, "two")
        conn.execute(effect, (input.id, os.getpid()))
        return three(input)

    @saga.step
    def three(input: Job) -> None:
        log(input.id, "three")
        if input.pause:
            time.sleep(input.pause)

    @saga.step
    def slow(input: Job) -> None:
        log(input.id, "slow", "start")
        time.sleep(input.pause)
        log(input.id, "slow", "done")

    @saga.step
    def busy(input: Job) -> None:
        """Hold the CPU (and the GIL, between switches) for input.pause seconds."""
        log(input.id, "busy", "start")
        until, spins = time.monotonic() + input.pause, 0
        while time.monotonic() < until:
            spins += sum(range(1000))
        log(input.id, "busy", "done")

    return saga


saga = build(SCHEMA)
