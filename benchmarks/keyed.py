"""Limits: what a per-key limit costs.

1. Throughput: N three-step `bench` sagas spread over 1,000 keys, run once without a
   limit and once with `limit(per_key=1)`, side by side (plain then keyed, on fresh
   schemas, each pair in one run); the ratio keyed / plain. Target (issue 17): >= 0.8.
2. Claim cost: the time of one `claim_limited` call while 100,000 due rows wait on a
   saturated key, as a ratio to the same call with one row waiting: the claim must not
   walk the backlog (one index descent skips a key, however many rows it holds).

    python -m benchmarks.keyed [--quick] [--sagas N] [--repeat R]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from statistics import median
from typing import Any, Final

from psycopg import sql

from . import apps, harness
from .harness import Database, Result, envelope, parser, print_table, ratio, write_result
from .workers import run_sagas, seed, table

SAGAS: Final = 10_000
WAITING: Final = 100_000
TARGET_RATIO: Final = 0.8
CLAIMS: Final = 200  # claims timed per case


def throughput(db: Database, sagas: int, threads: int, processes: int) -> dict[str, Any]:
    """One plain and one keyed run of *sagas* sagas; their steps/s and the ratio."""
    runs: dict[str, Any] = {}
    for mode, target in (("plain", "benchmarks.apps:saga"), ("keyed", "benchmarks.apps:keyed")):
        with db.schema() as schema:
            with db.connect() as conn:
                low, high = seed(conn, schema, sagas)
                conn.execute(sql.SQL("UPDATE {t} SET key = 'k' || (id %% %s)").format(
                    t=table(schema)), (apps.KEYS,))
                conn.execute(sql.SQL("ANALYZE {t}").format(t=table(schema)))
            done = _run(db, schema, sagas, (low, high), threads, processes, target)
            runs[mode] = done.as_dict()
    runs["ratio"] = round(ratio(runs["keyed"]["steps_per_s"], runs["plain"]["steps_per_s"]), 3)
    return runs


def _run(db: Database, schema: str, sagas: int, first: tuple[int, int], threads: int,
         processes: int, target: str) -> Any:
    return run_sagas(db, schema, sagas, threads=threads, processes=processes, first=first,
                     target=target)


def claim_cost(db: Database, waiting: int) -> dict[str, Any]:
    """Milliseconds per claim with *waiting* rows behind a saturated key, and with one."""
    saga = apps.build_keyed("unused")
    spec = saga.spec()
    out: dict[str, Any] = {}
    for case, n in (("one", 2), ("saturated", waiting)):
        with db.schema() as schema, db.connect() as conn:
            conn.execute(sql.SQL(
                "INSERT INTO {t} (name, instance_id, step, input, key, status, limited,"
                " runner_id, run_after) SELECT %s, 'i' || g, 'first', '1', 'big',"
                " CASE WHEN g = 1 THEN 1 ELSE 0 END, g = 1, 'r',"
                " now() - interval '1 hour' + g * interval '1 ms'"
                " FROM generate_series(1, %s) AS g").format(t=table(schema)), (apps.NAME, n))
            conn.execute(sql.SQL("ANALYZE {t}").format(t=table(schema)))
            claim = sql.SQL("SELECT * FROM {}.claim_limited(%s, 'me', %s, 8, %s::jsonb, %s)"
                            ).format(sql.Identifier(schema))
            params = (apps.NAME, list(spec.steps), spec.limits_json, "big")
            for _ in range(20):
                conn.execute(claim, params).fetchall()
            began = time.perf_counter()
            for _ in range(CLAIMS):
                assert conn.execute(claim, params).fetchall()[0][0] == 2  # nothing claimed
            out[f"{case}_ms"] = round((time.perf_counter() - began) * 1000 / CLAIMS, 3)
    out["ratio"] = round(ratio(out["saturated_ms"], out["one_ms"]), 2)
    return out


def run(db: Database, *, sagas: int = SAGAS, waiting: int = WAITING, threads: int = 8,
        processes: int = 2, repeat: int = 1, results_dir: Any = None) -> Result:
    result = envelope("keyed", db, {"sagas": sagas, "keys": apps.KEYS, "threads": threads,
                                    "processes": processes, "waiting": waiting,
                                    "repeat": repeat})
    pairs = [throughput(db, sagas, threads, processes) for _ in range(repeat)]
    cost = claim_cost(db, waiting)
    result["results"] = pairs
    result["claim_cost"] = cost
    result["summary"] = {"ratio": median(p["ratio"] for p in pairs),
                         "target_ratio": TARGET_RATIO, "claim_cost_ratio": cost["ratio"]}
    print_table(f"per-key limit over {apps.KEYS:,} keys: {sagas:,} sagas x 3 steps, "
                f"{processes} x {threads} threads",
                ["plain steps/s", "keyed steps/s", "ratio"],
                [[p["plain"]["steps_per_s"], p["keyed"]["steps_per_s"], p["ratio"]]
                 for p in pairs])
    print_table(f"claim_limited with {waiting:,} rows behind a saturated key",
                ["1 waiting ms", f"{waiting:,} waiting ms", "ratio"],
                [[cost["one_ms"], cost["saturated_ms"], cost["ratio"]]])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("keyed", "throughput under a per-key limit, and the claim's cost at a backlog")
    p.add_argument("--sagas", type=int, help=f"sagas per run (default {SAGAS:,}, quick 1,000)")
    p.add_argument("--repeat", type=int, default=1, help="plain/keyed pairs (default 1)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    sagas = args.sagas or (1000 if args.quick else SAGAS)
    return run(db, sagas=sagas, waiting=10_000 if args.quick else WAITING,
               repeat=args.repeat, results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
