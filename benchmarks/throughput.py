"""Throughput: N three-step no-op sagas on one worker process at 1, 2, 4, 8, 16 threads,
and on two processes of 8 threads, as steps/s and as a ratio to the pgbench
claim+advance limit (8 clients), measured just before each run.

Target (issue 3): >= 0.6 of the limit at 8 threads. Each configuration runs on a fresh
schema (see `benchmarks.workers` for how a run is timed).

    python -m benchmarks.throughput [--quick] [--sagas N] [--threads 1,2,4,8,16]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any, Final

from . import chart, harness, limit
from .harness import (
    Database,
    Result,
    envelope,
    parser,
    print_table,
    ratio,
    write_result,
)
from .workers import run_sagas

SAGAS: Final = 10_000
THREADS: Final = (1, 2, 4, 8, 16)
PROCESSES: Final = ((2, 8),)  # (processes, threads each)
TARGET_RATIO: Final = 0.6
LIMIT_SECONDS: Final = 5


def configurations(threads: Sequence[int],
                   processes: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(processes, threads per process) pairs: one process at each thread count first."""
    return [(1, t) for t in threads] + list(processes)


def run(db: Database, *, sagas: int = SAGAS, threads: Sequence[int] = THREADS,
        processes: Sequence[tuple[int, int]] = PROCESSES, limit_seconds: int = LIMIT_SECONDS,
        limit_clients: Sequence[int] = (8, 16), repeat: int = 1,
        results_dir: Path | None = None, chart_path: Path | None = None) -> Result:
    """Run the sweep, each configuration *repeat* times, every run right after its own
    pgbench limit measurement (at the first of *limit_clients*), and keep the run with
    the median ratio; print, write JSON and (with *chart_path*) draw the chart.

    Pairing each run with a limit measured seconds before it cancels much of the drift
    of a shared machine, whose load comes and goes between runs.
    """
    clients = limit_clients[0]
    result = envelope("throughput", db, {
        "sagas": sagas, "steps_per_saga": 3, "threads": list(threads),
        "processes": [list(p) for p in processes], "limit_seconds": limit_seconds,
        "limit_clients": list(limit_clients), "repeat": repeat,
    })
    more = limit.measure(db, scripts=[limit.CLAIM], clients=limit_clients[1:],
                         duration=limit_seconds) if len(limit_clients) > 1 else []
    rows: list[dict[str, Any]] = []
    for procs, per in configurations(threads, processes):
        pairs = []
        for _ in range(repeat):
            claim = limit.claim_limit(limit.measure(db, scripts=[limit.CLAIM],
                                                    clients=[clients],
                                                    duration=limit_seconds), clients)
            with db.schema() as schema:
                pairs.append((run_sagas(db, schema, sagas, threads=per, processes=procs),
                              claim))
        ranked = sorted(pairs, key=lambda pair: ratio(pair[0].steps_per_s, pair[1]))
        done, claim = ranked[(len(ranked) - 1) // 2]
        rows.append({"processes": procs, "threads": per, **done.as_dict(),
                     "limit_steps_per_s": claim,
                     "ratio": round(ratio(done.steps_per_s, claim), 3),
                     "all_steps_per_s": [r.steps_per_s for r, _ in pairs],
                     "all_limits": [c for _, c in pairs]})
        print(f"  {procs} x {per} threads: {done.steps_per_s:,.0f} steps/s, "
              f"limit {claim:,.0f}", flush=True)
    limits = [c for r in rows for c in r["all_limits"]]
    overall = median(limits) if limits else float("nan")
    result["limit"] = {"claim_steps_per_s": round(overall, 1), "clients": clients,
                       "measured": limits, "more_clients": more}
    result["results"] = rows
    at_8 = [r for r in rows if r["processes"] == 1 and r["threads"] == 8]
    result["summary"] = {
        "limit_steps_per_s": round(overall, 1),
        "steps_per_s_8_threads": at_8[0]["steps_per_s"] if at_8 else None,
        "ratio_8_threads": at_8[0]["ratio"] if at_8 else None,
        "target_ratio": TARGET_RATIO,
    }
    report(result)
    write_result(result, results_dir)
    if chart_path is not None:
        chart.draw(result, chart_path)
    return result


def report(result: Result) -> None:
    if result["limit"]["more_clients"]:
        limit.report(result["limit"]["more_clients"], "pgbench limit with more clients")
    print_table(
        f"throughput: {result['settings']['sagas']:,} sagas x 3 no-op steps; ratio to the "
        f"pgbench claim+advance limit ({result['limit']['clients']} clients) measured just "
        f"before each run (median {result['limit']['claim_steps_per_s']:,.0f} steps/s)",
        ["processes", "threads", "steps", "seconds", "steps/s", "limit", "ratio", "complete"],
        [[r["processes"], r["threads"], r["steps"], r["seconds"], r["steps_per_s"],
          r["limit_steps_per_s"], r["ratio"], r["complete"]] for r in result["results"]])


def arguments() -> argparse.ArgumentParser:
    p = parser("throughput", "steps/s against threads, next to the pgbench limit")
    p.add_argument("--sagas", type=int, help=f"sagas per run (default {SAGAS:,}, quick 1,000)")
    p.add_argument("--threads", default=",".join(map(str, THREADS)),
                   help="thread counts of the one-process runs")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per configuration, the median reported (default 1; 3 to "
                   "compare two versions on a busy machine)")
    p.add_argument("--chart", type=Path,
                   help="where to draw the chart (default benchmarks/threads.png, or "
                   "threads.png in --results when that is not the default)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, sagas=args.sagas or (1_000 if args.quick else SAGAS),
               threads=[int(t) for t in args.threads.split(",")],
               limit_seconds=2 if args.quick else LIMIT_SECONDS, repeat=args.repeat,
               results_dir=args.results, chart_path=args.chart or chart.default_path(args.results))


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
