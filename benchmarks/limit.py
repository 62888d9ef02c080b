"""The pgbench limit: what the database itself can do per second for one saga step.

Three custom pgbench scripts (`benchmarks/pgbench/*.sql`) run against the real saga
schema (saga's migrations, seeded with due rows), each re-queueing the rows it touches
so the table never runs dry:

- claim_advance: claim one due row FOR UPDATE SKIP LOCKED and write its continuation,
  in one transaction: the least one step must cost in this design;
- claim_batch: the same for ten rows per transaction (ten steps per commit);
- update: one autocommit UPDATE, the floor of one commit per step.

Two more scripts start sagas without running a step (`insert`, `insert_notify`: a due row
inserted in one autocommit statement, without and with saga's `pg_notify`); `pgbench_mix`
runs scripts together in a given ratio (the live shape: insert 1, claim_advance 3).

Every other benchmark reports its figures as a ratio to these, measured in the same
run, since the absolute numbers depend on the machine (and on who else is using it).

    python -m benchmarks.limit [--quick] [--duration S] [--clients 8,16]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from saga.testing import pgbench_path

from . import harness
from .harness import Database, Result, envelope, parser, print_table, write_result
from .workers import seed

SCRIPTS_DIR: Final = Path(__file__).resolve().parent / "pgbench"
SCRIPTS: Final = {"claim_advance": 1, "claim_batch": 10, "update": 1}  # steps per transaction
# Starts without a step (benchmarks.live and benchmarks.concurrent_start): a bare INSERT of
# a due row, and the same with the pg_notify saga's start() sends.
INSERTS: Final = ("insert", "insert_notify")
STEPS_PER_TRANSACTION: Final = {**SCRIPTS, **dict.fromkeys(INSERTS, 0)}
CLAIM: Final = "claim_advance"
ROWS: Final = 10_000  # seeded due rows: far more than clients, so a claim never comes back empty
SEED_NAME: Final = "pgbench"  # the saga name the scripts claim (see the .sql files)

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_SCRIPT_TPS = re.compile(r"^SQL script \d+: (?P<file>\S+)\n(?: - .*\n)*?"
                         r" - number of transactions actually processed: \d+ "
                         r"\(tps = (?P<tps>[0-9.]+)\)", re.M)


def pgbench(db: Database, schema: str, script: str, *, clients: int, duration: int,
            first: int, last: int) -> dict[str, Any]:
    """Run one script for *duration* seconds with *clients* clients; return its figures.

    Raise `RuntimeError` with pgbench's output if it fails or any client aborts.
    """
    out = _pgbench(db, schema, ["-f", str(SCRIPTS_DIR / f"{script}.sql")],
                   clients=clients, duration=duration, first=first, last=last)
    tps, processed = _TPS.search(out), _DONE.search(out)
    assert tps is not None  # _pgbench checked both
    assert processed is not None
    latency, failed = _LATENCY.search(out), _FAILED.search(out)
    per = STEPS_PER_TRANSACTION[script]
    return {
        "script": script,
        "clients": clients,
        "seconds": duration,
        "transactions": int(processed.group(1)),
        "tps": round(float(tps.group(1)), 1),
        "steps_per_s": round(float(tps.group(1)) * per, 1),
        "latency_ms": float(latency.group(1)) if latency else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


def pgbench_mix(db: Database, schema: str, weights: Mapping[str, int], *, clients: int,
                duration: int, first: int, last: int) -> dict[str, Any]:
    """Run several scripts at once, each transaction picking one by *weights* (pgbench's
    `-f script@weight`); return the total and each script's transactions per second.

    `steps_per_s` counts the steps of the scripts that run steps (claim_advance: one per
    transaction; an insert runs none).
    """
    files = [a for script, w in weights.items()
             for a in ("-f", f"{SCRIPTS_DIR / script}.sql@{w}")]
    out = _pgbench(db, schema, files, clients=clients, duration=duration, first=first,
                   last=last)
    tps = _TPS.search(out)
    assert tps is not None  # checked by _pgbench
    per_script = {Path(m["file"]).stem: float(m["tps"]) for m in _SCRIPT_TPS.finditer(out)}
    if set(per_script) != set(weights):
        raise RuntimeError(f"pgbench mix: no per-script figures in its output:\n{out[-3000:]}")
    failed = _FAILED.search(out)
    return {
        "scripts": dict(weights),
        "clients": clients,
        "seconds": duration,
        "tps": round(float(tps.group(1)), 1),
        "tps_by_script": {k: round(v, 1) for k, v in per_script.items()},
        "steps_per_s": round(sum(v * STEPS_PER_TRANSACTION[k] for k, v in per_script.items()),
                             1),
        "failed": int(failed.group(1)) if failed else 0,
    }


def _pgbench(db: Database, schema: str, files: Sequence[str], *, clients: int, duration: int,
             first: int, last: int) -> str:
    """Run pgbench with the script options *files*; return its output, checked."""
    binary = pgbench_path()
    if binary is None:
        raise RuntimeError("no pgbench: install pgsaga[embedded] or PostgreSQL's client tools")
    threads = max(1, min(clients, os.cpu_count() or 1))
    command = [binary, "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads),
               "-T", str(duration), "-D", f"first={first}", "-D", f"last={last}",
               *files, db.dsn]
    env = {**os.environ, "PGOPTIONS": f"-c search_path={schema}"}
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=duration + 60, check=False)
    out = done.stdout + done.stderr
    if (done.returncode != 0 or _TPS.search(out) is None or _DONE.search(out) is None
            or "aborted" in out):
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{out[-3000:]}")
    return out


def measure(db: Database, *, scripts: Sequence[str] = tuple(SCRIPTS),
            clients: Sequence[int] = (8, 16), duration: int = 10,
            rows: int = ROWS) -> list[dict[str, Any]]:
    """Run each script at each client count on a fresh, seeded saga schema."""
    results = []
    with db.schema("pgb") as schema, db.connect() as conn:
        first, last = seed(conn, schema, rows, name=SEED_NAME, run_after=-60.0)
        conn.execute(f"VACUUM ANALYZE {schema}.instance")
        for script in scripts:
            for n in clients:
                results.append(pgbench(db, schema, script, clients=n, duration=duration,
                                       first=first, last=last))
    return results


def claim_limit(results: Sequence[dict[str, Any]], clients: int = 8) -> float:
    """The claim+advance steps/s at *clients* clients among *results* (NaN if absent)."""
    for r in results:
        if r["script"] == CLAIM and r["clients"] == clients:
            return float(r["steps_per_s"])
    return float("nan")


def report(rows: Sequence[dict[str, Any]], title: str = "pgbench limit") -> None:
    print_table(title, ["script", "clients", "tps", "steps/s", "latency ms", "failed"],
                [[r["script"], r["clients"], r["tps"], r["steps_per_s"], r["latency_ms"],
                  r["failed"]] for r in rows])


def run(db: Database, *, clients: Sequence[int] = (8, 16), duration: int = 10,
        scripts: Sequence[str] = tuple(SCRIPTS), results_dir: Path | None = None) -> Result:
    """Measure the limit, print it and write `limit.json`."""
    result = envelope("limit", db, {"clients": list(clients), "duration": duration,
                                    "scripts": list(scripts), "rows": ROWS})
    result["results"] = measure(db, scripts=scripts, clients=clients, duration=duration)
    result["claim_limit_8"] = claim_limit(result["results"], 8)
    report(result["results"])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("limit", "pgbench with saga-shaped scripts: the database's own limit")
    p.add_argument("--duration", type=int, help="seconds per pgbench run (default 10, quick 2)")
    p.add_argument("--clients", default="8,16", help="client counts (default 8,16)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, clients=[int(c) for c in args.clients.split(",")],
               duration=args.duration or (2 if args.quick else 10), results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
