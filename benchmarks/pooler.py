"""Through PgBouncer: the throughput of N three-step no-op sagas on one worker process
of 8 threads, direct and through a PgBouncer in transaction pooling (`--pooler`:
poll-only, and with `--listen-dsn` direct), as ratios to direct measured in the same
run; the server connections each way (the connection budget); and the idle wake-up
latency each way.

Not part of `python -m benchmarks`: it needs the pgbouncer binary (apt-get install
pgbouncer). The PgBouncer is started here, in front of the benchmark's server.

    python -m benchmarks.pooler [--quick] [--sagas N] [--threads 8] [--pool-size 4]
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from statistics import median
from typing import Any, Final

from saga.pgbouncer import temporary_pgbouncer
from saga.pooling import POOLER_POLL_INTERVAL

from . import harness, latency
from .harness import (
    Database,
    Result,
    envelope,
    parser,
    percentile,
    print_table,
    ratio,
    write_result,
)
from .workers import WorkerProcess, run_sagas

SAGAS: Final = 10_000
THREADS: Final = 8
POOL_SIZE: Final = 4  # PgBouncer's default_pool_size: half the threads, so they share
WAKE_TRIALS: Final = 40  # idle wake-ups timed per configuration (start() to the step)
# The benchmark's own connections to the server while a run is sampled: run_sagas'
# progress connection and the sampler's.
OWN_CONNECTIONS: Final = 2
COUNT_BACKENDS: Final = """
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'client backend' AND datname = current_database()"""


class Peak:
    """The most server connections seen at the samples of a run (less the benchmark's)."""

    def __init__(self, db: Database) -> None:
        self._conn = db.connect()
        self._lock = threading.Lock()
        self.most = 0

    def __call__(self, seconds: float, steps: int, procs: list[WorkerProcess]) -> None:
        with self._lock:
            row = self._conn.execute(COUNT_BACKENDS).fetchone()
            assert row is not None
            self.most = max(self.most, int(row[0]) - OWN_CONNECTIONS)

    def close(self) -> None:
        self._conn.close()


def run(db: Database, *, sagas: int = SAGAS, threads: int = THREADS,
        pool_size: int = POOL_SIZE, repeat: int = 1, wake_trials: int = WAKE_TRIALS,
        results_dir: Any = None) -> Result:
    """Run the configurations in turn, *repeat* times, each on a fresh schema; keep each
    one's median and print its ratio to direct. Then time *wake_trials* idle wake-ups
    (`start()` to the step's first line, as `benchmarks.latency`) in each."""
    result = envelope("pooler", db, {"sagas": sagas, "threads": threads,
                                     "pgbouncer_pool_size": pool_size, "repeat": repeat,
                                     "wake_trials": wake_trials})
    wake: dict[str, list[float]] = {}
    runs: dict[str, list[dict[str, Any]]] = {}
    with temporary_pgbouncer(db.dsn, pool_size=pool_size) as bouncer:
        configurations: dict[str, tuple[str | None, tuple[str, ...]]] = {
            "direct": (None, ()),
            # Pooler mode without the pooler: what no prepared statements and polling cost.
            "direct, --pooler": (None, ("--pooler",)),
            "pgbouncer, poll-only": (bouncer.dsn, ("--pooler",)),
            "pgbouncer, --listen-dsn": (bouncer.dsn, ("--pooler", "--listen-dsn", db.dsn)),
        }
        for _ in range(repeat):
            for name, (dsn, options) in configurations.items():
                peak = Peak(db)
                try:
                    with db.schema() as schema:
                        done = run_sagas(db, schema, sagas, threads=threads, dsn=dsn,
                                         options=options, sample=peak)
                finally:
                    peak.close()
                runs.setdefault(name, []).append(
                    {**done.as_dict(), "server_connections": peak.most})
                print(f"  {name}: {done.steps_per_s:,.0f} steps/s, "
                      f"{peak.most} server connections", flush=True)
        for name, (dsn, options) in configurations.items():
            with db.schema() as schema:
                # The poll interval given is pooler mode's default, passed so that the
                # pause between trials is random over a whole interval: trials then
                # fall anywhere between two polls.
                found, _ = latency.trials(db, schema, wake_trials, notify=True,
                                          threads=threads, poll_interval=POOLER_POLL_INTERVAL,
                                          worker_dsn=dsn, worker_options=options)
            wake[name] = found
            print(f"  {name}: wake-up p50 {percentile(found, 50):.1f} ms", flush=True)
        result["pgbouncer"] = bouncer.binary
    rows = []
    direct = median(r["steps_per_s"] for r in runs["direct"])
    for name, found in runs.items():
        steps_per_s = median(r["steps_per_s"] for r in found)
        rows.append({"configuration": name, "steps_per_s": steps_per_s,
                     "ratio_to_direct": round(ratio(steps_per_s, direct), 3),
                     "server_connections": max(r["server_connections"] for r in found),
                     "wake_p50_ms": round(percentile(wake[name], 50), 2),
                     "wake_p90_ms": round(percentile(wake[name], 90), 2),
                     "complete": all(r["complete"] for r in found), "runs": found})
    result["results"] = rows
    result["summary"] = {r["configuration"]: r["ratio_to_direct"] for r in rows}
    print_table(
        f"through PgBouncer (transaction pooling, default_pool_size {pool_size}): "
        f"{sagas:,} sagas x 3 no-op steps, 1 worker process x {threads} threads",
        ["configuration", "steps/s", "ratio to direct", "server connections (peak)",
         "wake-up p50 ms", "p90 ms", "complete"],
        [[r["configuration"], r["steps_per_s"], r["ratio_to_direct"],
          r["server_connections"], r["wake_p50_ms"], r["wake_p90_ms"], r["complete"]]
         for r in rows])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("pooler", "throughput through PgBouncer (transaction mode), as a ratio "
               "to direct")
    p.add_argument("--sagas", type=int, help=f"sagas per run (default {SAGAS:,}, quick 500)")
    p.add_argument("--threads", type=int, default=THREADS,
                   help=f"worker threads (default {THREADS})")
    p.add_argument("--pool-size", type=int, default=POOL_SIZE,
                   help=f"PgBouncer's default_pool_size (default {POOL_SIZE})")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of the three configurations; medians reported (default 1)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, sagas=args.sagas or (500 if args.quick else SAGAS), threads=args.threads,
               pool_size=args.pool_size, repeat=args.repeat,
               wake_trials=10 if args.quick else WAKE_TRIALS, results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
