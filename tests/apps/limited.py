"""Sagas under limits, for the worker processes of tests/test_limits_slow.py.

Each has one step, `work`, whose input is the instance id: it records its interval
(database clock), the row's key and when it was claimed (its updated_at, which the claim
sets) in `{schema}.ran`, in the step's own transaction,
so that a step killed half-way leaves no interval. `SAGA_TEST_HOLD` is how long a step
takes (seconds, default 0.005).
"""

from __future__ import annotations

import os
import time
from typing import Any

from psycopg import sql

from saga import Saga

from . import SCHEMA

RAN_TABLE = ("CREATE TABLE IF NOT EXISTS {schema}.ran (name text, instance text, key text,"
             " began float8, ended float8, claimed float8)")


def build(name: str, schema: str, dsn: str | None = None) -> Saga:
    saga = Saga(name, dsn, schema=schema, backoff_base=0.1, backoff_max=0.5)
    hold = float(os.environ.get("SAGA_TEST_HOLD", "0.005"))
    began_q = sql.SQL("SELECT extract(epoch FROM clock_timestamp())::float8")
    insert = sql.SQL(
        "INSERT INTO {schema}.ran SELECT name, instance_id, key, %s,"
        " extract(epoch FROM clock_timestamp())::float8, extract(epoch FROM updated_at)::float8"
        " FROM {schema}.instance WHERE name = %s AND instance_id = %s").format(
            schema=sql.Identifier(schema))

    @saga.step
    def work(instance: str, *, conn: Any) -> None:
        [(began,)] = conn.execute(began_q).fetchall()
        time.sleep(hold)
        conn.execute(insert, (began, name, instance))

    if name == "keyed":
        saga.limit(per_key=1)
    elif name == "capped":
        saga.limit(work, running=3)
    elif name == "paced":
        saga.limit(work, rate=20, per=1.0)
    elif name == "fair":
        saga.limit(per_key=2)
    return saga


keyed = build("keyed", SCHEMA)
capped = build("capped", SCHEMA)
paced = build("paced", SCHEMA)
fair = build("fair", SCHEMA)
