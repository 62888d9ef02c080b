"""Schedules: what serving 1,000 schedules costs an idle worker, and how fast due ticks
are made, next to `start()` in a loop (one instance each, as a tick makes).

- idle: a worker (1 thread) with 0 and then 1,000 hourly schedules, nothing due, for a
  few seconds each: the process' CPU time per second and the server's transactions per
  second (pg_stat_database, so the heartbeat and the polls count too), side by side.
- ticks: 1,000 schedules all due at once; one `Ticker.tick()` makes them (100 rows per
  transaction: a claim, then one statement that creates and advances); ticks/s against
  `start()`/s.

    python -m benchmarks.schedules [--quick] [--schedules 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from saga import Saga
from saga.pools import autocommit
from saga.schedules import Ticker

from . import harness
from .harness import Database, Result, envelope, parser, print_table, ratio, write_result

SCHEDULES: Final = 1_000
SECONDS: Final = 10.0  # of idling, per configuration


def build(schema: str, dsn: str, n: int, every: timedelta) -> Saga:
    saga = Saga("bench_schedules", dsn, schema=schema)

    @saga.step
    def tick(input: object) -> None:
        return None

    for i in range(n):
        saga.schedule(f"s{i:05d}", tick, every=every, input=i)
    return saga


def commits(db: Database) -> int:
    with db.connect() as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def idle(db: Database, n: int, seconds: float) -> dict[str, Any]:
    """A 1-thread worker serving *n* hourly schedules, idle, for *seconds*."""
    with db.schema("sched") as schema, build(schema, db.dsn, n, timedelta(hours=1)) as saga:
        runner = threading.Thread(target=saga.run, kwargs={"workers": 1}, daemon=True)
        runner.start()
        time.sleep(1.5)  # started, schedules declared and first ticks computed
        cpu, xacts, began = time.process_time(), commits(db), time.perf_counter()
        time.sleep(seconds)
        cpu, xacts = time.process_time() - cpu, commits(db) - xacts
        wall = time.perf_counter() - began
        saga.stop()
        runner.join(30)
    return {"schedules": n, "seconds": round(wall, 2),
            "cpu_ms_per_s": round(1000 * cpu / wall, 2),
            "transactions_per_s": round((xacts - 1) / wall, 1)}  # less our own look


def ticks(db: Database, n: int) -> dict[str, Any]:
    """*n* due schedules ticked by one `tick()`; then *n* `start()` calls, for scale."""
    with db.schema("sched") as schema, build(schema, db.dsn, n, timedelta(hours=1)) as saga:
        ticker = Ticker(saga.pool, schema, {saga.name: list(saga.schedules.values())})
        ticker.run_once()  # declares them all and computes each first tick: the next hour
        with saga.pool.connection() as conn:  # make this hour's tick due
            conn.execute(f'UPDATE "{schema}".schedule SET next_tick = next_tick - '
                         "interval '1 hour'")
        with autocommit(saga.pool) as conn:  # as the ticker's own loop has it
            began = time.perf_counter()
            made = ticker.tick(conn)
            tick_s = time.perf_counter() - began
        began = time.perf_counter()
        for i in range(n):
            saga.start(f"plain-{i}", "tick", i)
        start_s = time.perf_counter() - began
    return {"schedules": n, "ticks_made": made, "tick_seconds": round(tick_s, 3),
            "ticks_per_s": round(made / tick_s, 1), "starts_per_s": round(n / start_s, 1)}


def run(db: Database, *, schedules: int = SCHEDULES, seconds: float = SECONDS,
        results_dir: Path | None = None) -> Result:
    result = envelope("schedules", db, {"schedules": schedules, "seconds": seconds})
    quiet, busy = idle(db, 0, seconds), idle(db, schedules, seconds)
    made = ticks(db, schedules)
    overhead = {
        "cpu_ms_per_s": round(busy["cpu_ms_per_s"] - quiet["cpu_ms_per_s"], 2),
        "transactions_per_s": round(busy["transactions_per_s"] - quiet["transactions_per_s"], 1),
    }
    result["results"] = {"idle": [quiet, busy], "ticks": made, "overhead": overhead}
    result["summary"] = {
        f"idle_overhead_cpu_ms_per_s_{schedules}": overhead["cpu_ms_per_s"],
        f"idle_overhead_transactions_per_s_{schedules}": overhead["transactions_per_s"],
        "ticks_per_s": made["ticks_per_s"],
        "ticks_vs_start": round(ratio(made["ticks_per_s"], made["starts_per_s"]), 2),
    }
    print_table("schedules: an idle 1-thread worker", ["schedules", "seconds", "CPU ms/s",
                                                       "server transactions/s"],
                [[r["schedules"], r["seconds"], r["cpu_ms_per_s"], r["transactions_per_s"]]
                 for r in (quiet, busy)])
    print_table("schedules: due ticks made by one tick()",
                ["schedules", "ticks", "seconds", "ticks/s", "start()/s", "x start()"],
                [[made["schedules"], made["ticks_made"], made["tick_seconds"],
                  made["ticks_per_s"], made["starts_per_s"], result["summary"]["ticks_vs_start"]]])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("schedules", "the cost of serving many schedules")
    p.add_argument("--schedules", type=int,
                   help=f"schedules declared (default {SCHEDULES:,}, quick 200)")
    p.add_argument("--seconds", type=float,
                   help=f"idle time per configuration (default {SECONDS:g}, quick 2)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, schedules=args.schedules or (200 if args.quick else SCHEDULES),
               seconds=args.seconds or (2.0 if args.quick else SECONDS),
               results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
