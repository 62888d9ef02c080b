"""Bulk start: sagas/s of `saga.start_many()` in batches of 1,000 and 10,000, next to a
loop of `saga.start()`, from this process into a fresh schema (no worker running).

The time includes what the API does in Python (checking and encoding each input), as
a caller would see it; the items are built before the clock starts. A last batch
starts the first batch's ids again, to check that every duplicate is reported.

Target (issue 3): >= 20,000 sagas/s.

    python -m benchmarks.bulk_start [--quick] [--sagas 100000] [--loop 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from . import apps, harness
from .harness import (
    Database,
    Result,
    envelope,
    parser,
    print_table,
    ratio,
    write_result,
)

SAGAS: Final = 100_000  # started per batch size
BATCHES: Final = (1_000, 10_000)
LOOP: Final = 2_000  # single start() calls, for comparison
TARGET: Final = 20_000.0


def items(tag: str, n: int) -> dict[str, object]:
    """*n* instance ids (unique per *tag*) with small inputs."""
    return {f"{tag}-{i}": {"n": i} for i in range(n)}


def bulk(db: Database, schema: str, size: int, sagas: int) -> dict[str, Any]:
    """Start *sagas* instances in batches of *size*; then one batch again, all duplicates."""
    with apps.build(schema, db.dsn) as saga:
        if not hasattr(saga, "start_many"):
            return {"method": "start_many", "batch": size, "skipped": "no Saga.start_many"}
        batches = [items(f"b{size}-{k}", size) for k in range(max(1, sagas // size))]
        saga.start_many("first", {"warm-up": {"n": 0}})  # the pool's first connection
        began = time.perf_counter()
        for batch in batches:
            saga.start_many("first", batch)
        seconds = time.perf_counter() - began
        again = saga.start_many("first", batches[0])
    started = size * len(batches)
    return {"method": "start_many", "batch": size, "sagas": started,
            "seconds": round(seconds, 3), "sagas_per_s": round(started / seconds, 1),
            "duplicates_reported": len(again), "duplicates_expected": size}


def loop(db: Database, schema: str, n: int) -> dict[str, Any]:
    """Start *n* instances with one `start()` each."""
    batch = items("loop", n)
    with apps.build(schema, db.dsn) as saga:
        saga.start("warm-up", "first", {"n": 0})
        began = time.perf_counter()
        for instance, input in batch.items():
            saga.start(instance, "first", input)
        seconds = time.perf_counter() - began
    return {"method": "start", "batch": 1, "sagas": n, "seconds": round(seconds, 3),
            "sagas_per_s": round(n / seconds, 1)}


def run(db: Database, *, sagas: int = SAGAS, batches: Sequence[int] = BATCHES,
        loop_n: int = LOOP, results_dir: Path | None = None) -> Result:
    """Measure each batch size and the loop on fresh schemas; print, write `bulk_start.json`."""
    result = envelope("bulk_start", db, {"sagas": sagas, "batches": list(batches),
                                         "loop": loop_n})
    rows = []
    with db.schema("bulk") as schema:
        rows.append(loop(db, schema, loop_n))
    for size in batches:
        with db.schema("bulk") as schema:
            rows.append(bulk(db, schema, size, sagas))
    one = rows[0]["sagas_per_s"]
    for r in rows:
        r["vs_start"] = round(ratio(r["sagas_per_s"], one), 1) if "sagas_per_s" in r else None
    result["results"] = rows
    measured = [r for r in rows if r["method"] == "start_many" and "skipped" not in r]
    result["summary"] = {
        "start_per_s": one,
        **{f"start_many_{r['batch']}_per_s": r["sagas_per_s"] for r in measured},
        "target_per_s": TARGET,
    }
    print_table("bulk start: sagas/s from one process",
                ["method", "batch", "sagas", "seconds", "sagas/s", "x start()", "duplicates"],
                [[r["method"], r["batch"], r.get("sagas"), r.get("seconds"),
                  r.get("sagas_per_s"), r["vs_start"],
                  r.get("skipped") or (f"{r['duplicates_reported']}/{r['duplicates_expected']}"
                                       if "duplicates_reported" in r else None)]
                 for r in rows])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("bulk_start", "start_many() against a loop of start()")
    p.add_argument("--sagas", type=int,
                   help=f"sagas per batch size (default {SAGAS:,}, quick 20,000)")
    p.add_argument("--loop", type=int, help=f"start() calls (default {LOOP:,}, quick 500)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, sagas=args.sagas or (20_000 if args.quick else SAGAS),
               loop_n=args.loop or (500 if args.quick else LOOP), results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
