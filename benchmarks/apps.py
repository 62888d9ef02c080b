"""The sagas the benchmark workers run, as a deployment would import them.

A worker process runs `python -m saga.worker benchmarks.apps:saga --dsn ...`; the schema
comes from SAGA_BENCH_SCHEMA. The benchmark process builds the same sagas with
`build(schema, dsn)` / `build_latency(schema, dsn)` to start instances itself.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

from psycopg_pool import ConnectionPool

from saga import Saga

SCHEMA_VAR: Final = "SAGA_BENCH_SCHEMA"
SCHEMA: Final = os.environ.get(SCHEMA_VAR, "saga_bench")
TELEMETRY_VAR: Final = "SAGA_BENCH_OTEL_SDK"  # set: the OpenTelemetry SDK, exporting nothing

NAME: Final = "bench"  # the three-step no-op saga
LATENCY_NAME: Final = "latency"  # the one-step saga that stamps when it begins
STEPS: Final = ("first", "second", "third")  # what one `bench` instance runs, in order


def build(schema: str, dsn: str | None = None, *,
          pool: ConnectionPool[Any] | None = None) -> Saga:
    """The `bench` saga: three no-op steps, each going on at once with the next (on
    *pool* if given, which stays the caller's to close)."""
    saga = Saga(NAME, dsn, pool=pool, schema=schema)

    @saga.step
    def first(input: Any) -> object:
        return second(input)

    @saga.step
    def second(input: Any) -> object:
        return third(input)

    @saga.step
    def third(input: Any) -> object:
        return None

    return saga


KEYS: Final = 1000  # the concurrency keys of the `keyed` benchmark


def build_keyed(schema: str, dsn: str | None = None) -> Saga:
    """The `bench` saga under a per-key limit of 1 (whole saga): the same three no-op
    steps, at most one instance of each key RUNNING at once."""
    saga = build(schema, dsn)
    saga.limit(per_key=1)
    return saga


def build_latency(schema: str, dsn: str | None = None) -> Saga:
    """The `latency` saga: one step whose first act is to read the clock.

    Its input carries `sent`, the `time.time_ns()` of the caller just before `start()`;
    the step's final state holds both stamps. CLOCK_REALTIME is shared by every process
    of one machine, so `began - sent` is the wake-up latency across processes.
    """
    saga = Saga(LATENCY_NAME, dsn, schema=schema)

    @saga.step
    def stamp(input: dict[str, int]) -> object:
        began = time.time_ns()
        return {"sent": input["sent"], "began": began}

    return saga


if os.environ.get(TELEMETRY_VAR):
    from .telemetry_sdk import install_sdk
    install_sdk()

saga = build(SCHEMA)
latency = build_latency(SCHEMA)
keyed = build_keyed(SCHEMA)
