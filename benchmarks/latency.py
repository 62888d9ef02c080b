"""Wake-up latency: an idle worker process, a `start()` from this process, and the time
until the step function begins, over many trials.

The caller stamps `time.time_ns()` into the input just before `start()`; the step's
first line stamps it again (see `benchmarks.apps.build_latency`). Both read
CLOCK_REALTIME on one machine, so the difference spans the insert, its commit, the
NOTIFY, the wake-up, the claim and the decoding of the row. One trial at a time, with
a random pause between them so the worker is idle again and no poll tick is hit in step.

Two paths:
- notify: `saga.start()`, whose NOTIFY wakes an idle worker thread;
- poll: the same row inserted by plain SQL without a NOTIFY (as when notifications are
  lost, e.g. behind a pooler in transaction mode), found by the next poll tick. The
  runner has no option to switch LISTEN off, hence the SQL insert; the worker runs
  with a short `--poll-interval` so that the trials end in reasonable time.

Targets (issue 3): notify p50 <= 2 ms, p99 <= 5 ms.

    python -m benchmarks.latency [--quick] [--trials 500] [--poll-trials 100]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any, Final

from psycopg import sql

from . import apps, harness
from .harness import (
    Conn,
    Database,
    Result,
    envelope,
    parser,
    percentile,
    print_table,
    wait_until,
    write_result,
)
from .workers import table, workers

TRIALS: Final = 500
POLL_TRIALS: Final = 100
POLL_INTERVAL: Final = 0.2  # the worker's --poll-interval on the poll path
THREADS: Final = 8  # the worker's default
WARMUP: Final = 10  # trials run and discarded first: connections, prepared statements
SETTLE: Final = 0.02  # seconds after a trial before the next one, plus up to as much again
TRIAL_TIMEOUT: Final = 10.0
IDLE: Final = 0.5  # seconds between the worker's start and the first trial

_INSERT = """
INSERT INTO {t} (name, instance_id, step, input, run_after, created_at, updated_at)
VALUES (%s, %s, 'stamp', %s::jsonb, statement_timestamp(), statement_timestamp(),
        statement_timestamp())"""


def trials(db: Database, schema: str, n: int, *, notify: bool, threads: int,
           poll_interval: float | None,
           warmup: int = WARMUP) -> tuple[list[float], list[float]]:
    """Run *n* trials on an idle worker (with its default poll interval unless given);
    return the latencies, and how long the caller's `start()` (or INSERT) took, in ms."""
    saga = apps.build_latency(schema, db.dsn)
    insert = sql.SQL(_INSERT).format(t=table(schema))
    options = [] if poll_interval is None else ["--poll-interval", str(poll_interval)]
    found: list[float] = []
    calls: list[float] = []
    with saga, db.connect() as conn, workers(
            db, schema, threads=threads, target="benchmarks.apps:latency",
            options=options) as (worker,):
        wait_until(lambda: _registered(conn, schema), 30.0, 0.02, "worker start")
        time.sleep(IDLE)  # let every thread go idle (and the listener LISTEN)
        for i in range(-warmup, n):
            worker.check()
            instance = f"{'n' if notify else 'p'}-{i}"
            sent = time.time_ns()
            if notify:
                saga.start(instance, "stamp", {"sent": sent})
            else:
                conn.execute(insert, (apps.LATENCY_NAME, instance, json.dumps({"sent": sent})))
            returned = time.time_ns()
            state = _result(conn, schema, instance)
            if i >= 0:
                found.append((state["began"] - state["sent"]) / 1e6)
                calls.append((returned - sent) / 1e6)
            # A random pause: the worker goes idle again, and on the poll path the next
            # insert falls anywhere between two poll ticks.
            time.sleep(SETTLE + random.uniform(0, poll_interval or SETTLE))
    return found, calls


def _registered(conn: Conn, schema: str) -> bool:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {t}").format(t=table(schema, "runner")))
    return bool(row.fetchone()[0])  # type: ignore[index]


def _result(conn: Conn, schema: str, instance: str) -> dict[str, int]:
    """The final state of a trial's instance, once it is COMPLETE (looked at sparingly,
    so the polling does not slow the worker it measures)."""
    time.sleep(SETTLE)
    query = sql.SQL("SELECT state::text FROM {t} WHERE name = %s AND instance_id = %s "
                    "AND status = 2").format(t=table(schema))

    def done() -> dict[str, int] | None:
        row = conn.execute(query, (apps.LATENCY_NAME, instance)).fetchone()
        return None if row is None else dict(json.loads(row[0]))
    return wait_until(done, TRIAL_TIMEOUT, 0.01, f"trial {instance}")


def summarise(path: str, values: Sequence[float], calls: Sequence[float]) -> dict[str, Any]:
    """Percentiles of *values*; `call_p50_ms` is the median time the caller spent in
    `start()` (the rest of the latency is the wake-up)."""
    return {
        "path": path, "trials": len(values),
        "p50_ms": round(percentile(values, 50), 3), "p90_ms": round(percentile(values, 90), 3),
        "p99_ms": round(percentile(values, 99), 3), "max_ms": round(max(values), 3),
        "mean_ms": round(mean(values), 3), "call_p50_ms": round(percentile(calls, 50), 3),
    }


def run(db: Database, *, trials_notify: int = TRIALS, trials_poll: int = POLL_TRIALS,
        threads: int = THREADS, poll_interval: float = POLL_INTERVAL, warmup: int = WARMUP,
        results_dir: Path | None = None) -> Result:
    """Measure both paths on fresh schemas; print and write `latency.json`."""
    result = envelope("latency", db, {
        "trials_notify": trials_notify, "trials_poll": trials_poll, "threads": threads,
        "poll_interval": poll_interval, "warmup": warmup,
    })
    rows = []
    for path, n, notify in (("notify", trials_notify, True), ("poll", trials_poll, False)):
        if n <= 0:
            continue
        with db.schema("lat") as schema:
            # The notify path keeps the default poll interval: only NOTIFY can be that fast.
            values, calls = trials(db, schema, n, notify=notify, threads=threads,
                                   poll_interval=None if notify else poll_interval,
                                   warmup=warmup)
        rows.append({**summarise(path, values, calls),
                     "latencies_ms": [round(v, 3) for v in values]})
    result["results"] = rows
    notify_row = next((r for r in rows if r["path"] == "notify"), None)
    result["summary"] = {
        "p50_ms": notify_row["p50_ms"] if notify_row else None,
        "p99_ms": notify_row["p99_ms"] if notify_row else None,
        "target_p50_ms": 2.0, "target_p99_ms": 5.0,
    }
    print_table(f"latency: start() -> step begins, idle worker of {threads} threads "
                f"(poll path: --poll-interval {poll_interval:g})",
                ["path", "trials", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms",
                 "in start() p50 ms"],
                [[r["path"], r["trials"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"],
                  r["mean_ms"], r["call_p50_ms"]] for r in rows])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("latency", "wake-up latency of an idle worker, NOTIFY and poll paths")
    p.add_argument("--trials", type=int, help=f"notify trials (default {TRIALS}, quick 50)")
    p.add_argument("--poll-trials", type=int,
                   help=f"poll trials (default {POLL_TRIALS}, quick 10)")
    p.add_argument("--poll-interval", type=float, default=POLL_INTERVAL,
                   help=f"the worker's poll interval on the poll path (default {POLL_INTERVAL})")
    p.add_argument("--threads", type=int, default=THREADS, help="worker threads (default 8)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, trials_notify=args.trials or (50 if args.quick else TRIALS),
               trials_poll=(args.poll_trials if args.poll_trials is not None
                            else 10 if args.quick else POLL_TRIALS),
               threads=args.threads, poll_interval=args.poll_interval,
               results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
