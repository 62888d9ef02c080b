"""The "fault_events" saga, for the race tests: instances that wait for external events,
which callers send with `saga.call(instance, "event", Event(k))` while workers run them.

For `cancel()`: `work` runs WORK_STEPS steps, some undelayed and some delayed, logging
each one's start into `{schema}.executed` (tests/apps/fault_chain.py's log) on a
connection of its own, so that a step begun after a cancel would show.

An instance waits in `wait` (delayed an hour: only a call moves it on). `event` records
its input's `k` into `{schema}.applied` through `conn` (so exactly when its outcome is
recorded), then the instance keeps its workers busy with a few short `tick`s before
waiting again. Calls that land on a running instance raise `ConcurrencyException`;
those that land on a pending one (waiting or between ticks) replace its next step.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from saga import Saga

from . import SCHEMA
from .fault_chain import StepLog

HOUR = 3600.0
TICKS = 3  # short steps after each event
TICK_DELAY = 0.01  # seconds between ticks: the instance is PENDING, and callable, meanwhile
STEP_TIME = 0.003  # seconds each step takes: the instance is RUNNING meanwhile
WORK_STEPS = 6  # steps of a `work` chain

APPLIED_TABLE = """
CREATE TABLE {schema}.applied (
    instance text        NOT NULL,
    k        integer     NOT NULL,
    pid      integer     NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


@dataclass
class Event:
    """What a caller sends: a number unique to the call."""

    k: int


@dataclass
class Tick:
    left: int


@dataclass
class Work:
    n: int  # this step's number, 1 to WORK_STEPS


def create_tables(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL(APPLIED_TABLE).format(schema=sql.Identifier(schema)))


def build(schema: str, dsn: str | None = None) -> Saga:
    saga = Saga("fault_events", dsn, schema=schema, max_attempts=100, backoff_base=0.1,
                backoff_max=1.0)
    applied = sql.SQL("INSERT INTO {}.applied (instance, k, pid) VALUES (%s, %s, %s)").format(
        sql.Identifier(schema))

    @saga.step
    def wait(input: None) -> object:
        """Wait for an event; nobody called within the hour: wait again."""
        return wait(None, delay=HOUR)

    @saga.step
    def event(input: Event, state: None, set_state: object,
              logger: logging.LoggerAdapter[Any], *, conn: psycopg.Connection[Any]) -> object:
        conn.execute(applied, (logger.extra["instance"], input.k, os.getpid()))  # type: ignore[index]
        time.sleep(STEP_TIME)
        return tick(Tick(TICKS), delay=TICK_DELAY)

    @saga.step
    def tick(input: Tick) -> object:
        time.sleep(STEP_TIME)
        if input.left <= 1:
            return wait(None, delay=HOUR)
        return tick(Tick(input.left - 1), delay=TICK_DELAY)

    log = StepLog(saga, schema)

    @saga.step
    def work(input: Work, state: None, set_state: object,
             logger: logging.LoggerAdapter[Any]) -> object:
        log(str(logger.extra["instance"]), "work", str(input.n))  # type: ignore[index]
        time.sleep(STEP_TIME)
        if input.n >= WORK_STEPS:
            return None
        # Every other continuation waits a little: the instance is PENDING meanwhile.
        return work(Work(input.n + 1), delay=TICK_DELAY if input.n % 2 else 0)

    return saga


saga = build(SCHEMA)
