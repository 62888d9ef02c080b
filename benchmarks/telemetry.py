"""The cost of telemetry: throughput of 3-step no-op sagas on one worker process with
traces and metrics on (`--otel --metrics-port 0`, the OpenTelemetry SDK with exporters
that drop everything, every instance carrying a sampled trace context as `start()`
stores it) against off, in one run: pairs of runs, off then on, each on a fresh schema.

Target (issue 14): on >= 0.9 of off. The ratio is of the medians over the pairs.

    python -m benchmarks.telemetry [--quick] [--sagas N] [--pairs N] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import median
from typing import Final

from psycopg import sql

from . import apps, harness
from .harness import Database, Result, envelope, parser, print_table, ratio, write_result
from .workers import run_sagas, seed, table

SAGAS: Final = 10_000
PAIRS: Final = 3
THREADS: Final = 8
TARGET_RATIO: Final = 0.9
ON: Final = ("--otel", "--metrics-port", "0")
# A sampled W3C traceparent, as the span of a traced start() would leave in the row.
TRACEPARENT: Final = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def one_run(db: Database, sagas: int, threads: int, on: bool) -> float:
    """Steps/s of one run on a fresh schema, telemetry *on* or off."""
    with db.schema() as schema, db.connect() as conn:
        first = seed(conn, schema, sagas)
        if on:
            conn.execute(sql.SQL("UPDATE {t} SET trace_parent = %s").format(
                t=table(schema)), (TRACEPARENT,))
            conn.execute(sql.SQL("VACUUM ANALYZE {t}").format(t=table(schema)))
        done = run_sagas(db, schema, sagas, threads=threads, first=first,
                         options=ON if on else (),
                         env={apps.TELEMETRY_VAR: "1"} if on else None)
        if not done.complete or done.errors:
            raise RuntimeError(f"the {'on' if on else 'off'} run did not complete: {done}")
        return done.steps_per_s


def run(db: Database, *, sagas: int = SAGAS, pairs: int = PAIRS, threads: int = THREADS,
        results_dir: Path | None = None) -> Result:
    """Run *pairs* pairs of runs (off, then on); print, write JSON, return the result."""
    result = envelope("telemetry", db, {"sagas": sagas, "steps_per_saga": 3,
                                        "pairs": pairs, "threads": threads,
                                        "on": " ".join(ON)})
    off_runs: list[float] = []
    on_runs: list[float] = []
    for i in range(pairs):
        off_runs.append(one_run(db, sagas, threads, on=False))
        on_runs.append(one_run(db, sagas, threads, on=True))
        print(f"  pair {i + 1}: off {off_runs[-1]:,.0f} steps/s, on {on_runs[-1]:,.0f}",
              flush=True)
    result["results"] = {"off_steps_per_s": off_runs, "on_steps_per_s": on_runs}
    result["summary"] = {
        "off_steps_per_s": median(off_runs), "on_steps_per_s": median(on_runs),
        "ratio": round(ratio(median(on_runs), median(off_runs)), 3),
        "target_ratio": TARGET_RATIO,
    }
    print_table(f"telemetry: {sagas:,} sagas x 3 no-op steps, 1 process x {threads} threads, "
                f"median of {pairs} pair(s)",
                ["off steps/s", "on steps/s", "on/off", "target"],
                [[result["summary"]["off_steps_per_s"], result["summary"]["on_steps_per_s"],
                  result["summary"]["ratio"], TARGET_RATIO]])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("telemetry", "throughput with traces and metrics on, against off")
    p.add_argument("--sagas", type=int, help=f"sagas per run (default {SAGAS:,}, quick 1,000)")
    p.add_argument("--pairs", type=int, help=f"off/on pairs (default {PAIRS}, quick 1)")
    p.add_argument("--threads", type=int, default=THREADS,
                   help=f"worker threads (default {THREADS})")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, sagas=args.sagas or (1_000 if args.quick else SAGAS),
               pairs=args.pairs or (1 if args.quick else PAIRS), threads=args.threads,
               results_dir=args.results)


def main(argv: list[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
