"""Backlog: does a big table slow the worker down? Throughput (one process, 8 threads,
N sagas) next to rows that are not its current work, as a ratio to an empty table.

Every scenario but `empty` holds ROWS COMPLETE instances (history nobody purged) and
ROWS PENDING ones that differ in what they mean to the claim query:

- waiting:    of the served saga, due in a day (sagas waiting for a webhook or a timer):
              the steady state of a busy system; the claim's index range stops at now();
- queue:      of the served saga and due, queued behind the N measured sagas: a queue
              that has fallen behind by ROWS; the claim walks a deep partial index;
- other_saga: due, of another saga this worker does not serve (another service's queue,
              in the same schema): the index's leading `name` column keeps them apart;
- unserved:   due, of a step of the served saga that this worker does not know (left
              over by a rolling deploy), queued ahead of the measured sagas: the claim
              must pass over them all, since `step` is not in the index. The worst case.

Rows are seeded with INSERT ... SELECT generate_series, then VACUUM ANALYZE (what
autovacuum would have done by then) and a CHECKPOINT (so the measured run does not
write out the seed's pages). Each worker run follows a pgbench claim+advance
measurement, and the ratio to `empty` goes through it (see `run`), since a shared
machine's load drifts between runs minutes apart. Target (issue 3): >= 0.8 of `empty`.
A run that cannot finish in `--timeout` seconds reports the rate of what it finished.

    python -m benchmarks.backlog [--quick] [--rows 1000000] [--sagas 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import psycopg

from . import apps, harness, limit
from .harness import (
    Database,
    Result,
    envelope,
    parser,
    print_table,
    ratio,
    write_result,
)
from .workers import run_sagas, seed, table

ROWS: Final = 1_000_000
SAGAS: Final = 10_000
THREADS: Final = 8
TIMEOUT: Final = 180.0
TARGET_RATIO: Final = 0.8
LIMIT_SECONDS: Final = 5
WORK_AFTER: Final = -3600.0  # the measured sagas are an hour overdue
DAY: Final = 86_400.0

# scenario -> the PENDING rows it adds: (saga name, step, run_after from now in seconds)
PENDING: Final[dict[str, tuple[str, str, float] | None]] = {
    "empty": None,
    "waiting": (apps.NAME, "second", DAY),
    "queue": (apps.NAME, "first", -60.0),  # due, but behind the measured sagas
    "other_saga": ("other", "first", -7200.0),
    "unserved": (apps.NAME, "retired", -7200.0),  # due, and ahead of the measured sagas
}


def prepare(db: Database, schema: str, scenario: str, rows: int, sagas: int) -> tuple[int, int]:
    """Seed *scenario*'s backlog and the measured sagas; return the sagas' id range."""
    with db.connect() as conn:
        pending = PENDING[scenario]
        if pending is not None:
            seed(conn, schema, rows, status=2, prefix="done")
            name, step, after = pending
            seed(conn, schema, rows, name=name, step=step, run_after=after, prefix="backlog")
        work = seed(conn, schema, sagas, run_after=WORK_AFTER)
        conn.execute(f"VACUUM ANALYZE {table(schema).as_string(conn)}")
        # Write the seed's dirty pages out now, or the measured run pays for them.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")
    return work


def run(db: Database, *, rows: int = ROWS, sagas: int = SAGAS, threads: int = THREADS,
        scenarios: Sequence[str] = tuple(PENDING), timeout: float = TIMEOUT,
        limit_seconds: int = LIMIT_SECONDS, limit_clients: int = 8,
        results_dir: Path | None = None) -> Result:
    """Run each scenario on a fresh schema, right after a pgbench claim+advance
    measurement; print and write `backlog.json`.

    `ratio` compares the scenario with `empty` through their own limits:
    (steps/s / limit) of the scenario over the same of `empty`, which cancels most of
    the drift of a shared machine between the two runs; `raw_ratio` is steps/s over
    steps/s.
    """
    result = envelope("backlog", db, {"rows": rows, "sagas": sagas, "threads": threads,
                                      "scenarios": list(scenarios), "timeout": timeout,
                                      "limit_seconds": limit_seconds,
                                      "limit_clients": limit_clients})
    found: list[dict[str, Any]] = []
    for scenario in scenarios:
        with db.schema("backlog") as schema:
            began = time.monotonic()
            work = prepare(db, schema, scenario, rows, sagas)
            seeded = time.monotonic() - began
            claim = limit.claim_limit(limit.measure(db, scripts=[limit.CLAIM],
                                                    clients=[limit_clients],
                                                    duration=limit_seconds), limit_clients)
            done = run_sagas(db, schema, sagas, threads=threads, first=work, timeout=timeout)
            size = _table_size(db, schema)
        found.append({"scenario": scenario, "backlog_rows": 0 if PENDING[scenario] is None
                      else 2 * rows, "seed_seconds": round(seeded, 1), "table_mb": size,
                      **done.as_dict(), "limit_steps_per_s": claim,
                      "vs_limit": round(ratio(done.steps_per_s, claim), 3)})
        print(f"  {scenario}: {done.steps_per_s:,.0f} steps/s, limit {claim:,.0f}", flush=True)
    empty = next((r for r in found if r["scenario"] == "empty"), None)
    for r in found:
        r["ratio"] = round(ratio(r["vs_limit"], empty["vs_limit"]), 3) if empty else None
        r["raw_ratio"] = round(ratio(r["steps_per_s"], empty["steps_per_s"]), 3) if empty \
            else None
    result["results"] = found
    result["summary"] = {r["scenario"]: r["ratio"] for r in found}
    result["summary"]["target_ratio"] = TARGET_RATIO
    print_table(f"backlog: {sagas:,} sagas x 3 steps, 1 process x {threads} threads, next to "
                f"{rows:,} COMPLETE + {rows:,} PENDING rows; ratio = (steps/s / limit) over "
                "the same for empty",
                ["scenario", "table MB", "steps", "seconds", "steps/s", "limit", "ratio",
                 "raw ratio", "complete"],
                [[r["scenario"], r["table_mb"], r["steps"], r["seconds"], r["steps_per_s"],
                  r["limit_steps_per_s"], r["ratio"], r["raw_ratio"], r["complete"]]
                 for r in found])
    write_result(result, results_dir)
    return result


def _table_size(db: Database, schema: str) -> float:
    """The instance table with its indexes, in MB."""
    with db.connect() as conn:
        row = conn.execute("SELECT pg_total_relation_size(%s::regclass)",
                           (table(schema).as_string(conn),)).fetchone()
    assert row is not None
    return round(int(row[0]) / 2**20, 1)


def arguments() -> argparse.ArgumentParser:
    p = parser("backlog", "throughput next to a large backlog, as a ratio to an empty table")
    p.add_argument("--rows", type=int, help=f"COMPLETE and PENDING rows each "
                   f"(default {ROWS:,}, quick 50,000)")
    p.add_argument("--sagas", type=int, help=f"measured sagas (default {SAGAS:,}, quick 1,000)")
    p.add_argument("--scenarios", type=scenario_list, default=list(PENDING),
                   help=f"comma-separated, among {', '.join(PENDING)}")
    p.add_argument("--timeout", type=float, default=TIMEOUT,
                   help=f"seconds a scenario may run (default {TIMEOUT:g})")
    return p


def scenario_list(text: str) -> list[str]:
    """Scenario names, separated by commas."""
    names = text.split(",")
    unknown = set(names) - set(PENDING)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return names


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, rows=args.rows or (50_000 if args.quick else ROWS),
               sagas=args.sagas or (1_000 if args.quick else SAGAS), scenarios=args.scenarios,
               timeout=args.timeout, limit_seconds=2 if args.quick else LIMIT_SECONDS,
               results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
