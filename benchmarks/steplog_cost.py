"""The step log's cost: throughput of N three-step no-op sagas (1 process x 8 threads)
in three variants, each run right after its own pgbench claim+advance limit, in turn,
REPEAT times, in one run of this benchmark:

- base:     migration 004's dashboard indexes dropped (what the table had before);
- indexes:  the schema as migrated (instance_updated_idx, instance_failed_idx), log off;
- log on:   the same with the step log on (`saga.steplog.enable`).

The ratio of each variant is (steps/s / limit) over the same for `base`, the median of
the repeats; see benchmarks.throughput for how a run is timed.

    python -m benchmarks.steplog_cost [--quick] [--sagas 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any, Final

from saga import steplog

from . import harness, limit
from .harness import Database, Result, envelope, parser, print_table, ratio, write_result
from .workers import run_sagas

SAGAS: Final = 10_000
THREADS: Final = 8
REPEAT: Final = 3
LIMIT_SECONDS: Final = 5
VARIANTS: Final = ("base", "indexes", "log on")


def prepare(db: Database, schema: str, variant: str) -> None:
    with db.connect() as conn:
        if variant == "base":
            for index in ("instance_updated_idx", "instance_failed_idx"):
                conn.execute(f'DROP INDEX "{schema}".{index}')
        elif variant == "log on":
            steplog.enable(conn, schema)


def run(db: Database, *, sagas: int = SAGAS, threads: int = THREADS, repeat: int = REPEAT,
        limit_seconds: int = LIMIT_SECONDS, results_dir: Path | None = None) -> Result:
    result = envelope("steplog_cost", db, {"sagas": sagas, "threads": threads,
                                           "repeat": repeat, "limit_seconds": limit_seconds})
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for _ in range(repeat):
        for variant in VARIANTS:
            claim = limit.claim_limit(limit.measure(db, scripts=[limit.CLAIM], clients=[8],
                                                    duration=limit_seconds), 8)
            with db.schema("steplog") as schema:
                prepare(db, schema, variant)
                done = run_sagas(db, schema, sagas, threads=threads)
                logged = _logged(db, schema) if variant == "log on" else 0
            runs[variant].append({**done.as_dict(), "limit_steps_per_s": claim,
                                  "vs_limit": ratio(done.steps_per_s, claim),
                                  "logged_rows": logged})
            print(f"  {variant}: {done.steps_per_s:,.0f} steps/s, limit {claim:,.0f}",
                  flush=True)
    base = median(r["vs_limit"] for r in runs["base"])
    rows = []
    for variant in VARIANTS:
        found = runs[variant]
        rows.append({"variant": variant,
                     "steps_per_s": median(r["steps_per_s"] for r in found),
                     "limit_steps_per_s": median(r["limit_steps_per_s"] for r in found),
                     "ratio": round(ratio(median(r["vs_limit"] for r in found), base), 3),
                     "all_steps_per_s": [r["steps_per_s"] for r in found],
                     "logged_rows": max(r["logged_rows"] for r in found)})
    result["results"] = rows
    result["summary"] = {r["variant"]: r["ratio"] for r in rows}
    print_table(f"step log cost: {sagas:,} sagas x 3 steps, 1 process x {threads} threads, "
                f"median of {repeat}; ratio = (steps/s / limit) over the same for base",
                ["variant", "steps/s", "limit", "ratio", "runs", "log rows"],
                [[r["variant"], r["steps_per_s"], r["limit_steps_per_s"], r["ratio"],
                  ", ".join(f"{v:,.0f}" for v in r["all_steps_per_s"]), r["logged_rows"]]
                 for r in rows])
    write_result(result, results_dir)
    return result


def _logged(db: Database, schema: str) -> int:
    with db.connect() as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".step_log').fetchone()
    return int(row[0]) if row else 0


def arguments() -> argparse.ArgumentParser:
    p = parser("steplog_cost", "throughput with the step log off and on")
    p.add_argument("--sagas", type=int, help=f"sagas per run (default {SAGAS:,}, quick 500)")
    p.add_argument("--repeat", type=int, help=f"rounds of the three variants (default "
                   f"{REPEAT}, quick 1)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, sagas=args.sagas or (500 if args.quick else SAGAS),
               repeat=args.repeat or (1 if args.quick else REPEAT),
               limit_seconds=1 if args.quick else LIMIT_SECONDS, results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
