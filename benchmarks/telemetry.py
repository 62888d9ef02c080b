"""The cost of telemetry: throughput of 3-step no-op sagas on one worker process with
traces and metrics on (`--otel --metrics-port 0`, the OpenTelemetry SDK with exporters
that drop everything, every instance carrying a sampled trace context as `start()`
stores it) against off, in one run: pairs of runs, off then on, each on a fresh schema.

Target (issue 14): on >= 0.9 of off. The ratio is of the medians over the pairs. On a
loaded machine throughput swings from run to run, so each run also reports the worker
process's CPU time per step (user + system, from /proc, between the first and the last
progress poll): the cost itself, which the load does not change much.

    python -m benchmarks.telemetry [--quick] [--sagas N] [--pairs N] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Final

from psycopg import sql

from . import apps, harness
from .harness import Database, Result, envelope, parser, print_table, ratio, write_result
from .workers import WorkerProcess, run_sagas, seed, table

SAGAS: Final = 10_000
PAIRS: Final = 3
THREADS: Final = 8
TARGET_RATIO: Final = 0.9
ON: Final = ("--otel", "--metrics-port", "0")
# A sampled W3C traceparent, as the span of a traced start() would leave in the row.
TRACEPARENT: Final = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process *pid* so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(db: Database, sagas: int, threads: int, on: bool,
            flags: Sequence[str] = ON) -> tuple[float, float]:
    """Steps/s of one run on a fresh schema, telemetry *on* or off, and the worker's
    CPU microseconds per step."""
    samples: list[tuple[int, float]] = []

    def sample(elapsed: float, steps: int, procs: list[WorkerProcess]) -> None:
        cpu = cpu_seconds(procs[0].pid)
        if cpu is not None:
            samples.append((steps, cpu))

    with db.schema() as schema, db.connect() as conn:
        first = seed(conn, schema, sagas)
        if on:
            conn.execute(sql.SQL("UPDATE {t} SET trace_parent = %s").format(
                t=table(schema)), (TRACEPARENT,))
            conn.execute(sql.SQL("VACUUM ANALYZE {t}").format(t=table(schema)))
        done = run_sagas(db, schema, sagas, threads=threads, first=first, sample=sample,
                         options=flags if on else (),
                         env={apps.TELEMETRY_VAR: "1"} if on else None)
        if not done.complete or done.errors:
            raise RuntimeError(f"the {'on' if on else 'off'} run did not complete: {done}")
    (steps_a, cpu_a), (steps_b, cpu_b) = samples[0], samples[-1]
    per_step = (cpu_b - cpu_a) / (steps_b - steps_a) * 1e6 if steps_b > steps_a else math.nan
    return done.steps_per_s, round(per_step, 1)


def run(db: Database, *, sagas: int = SAGAS, pairs: int = PAIRS, threads: int = THREADS,
        flags: Sequence[str] = ON, results_dir: Path | None = None) -> Result:
    """Run *pairs* pairs of runs (off, then on with the worker options *flags*); print,
    write JSON, return the result."""
    result = envelope("telemetry", db, {"sagas": sagas, "steps_per_saga": 3,
                                        "pairs": pairs, "threads": threads,
                                        "on": " ".join(flags)})
    off_runs: list[float] = []
    on_runs: list[float] = []
    off_cpu: list[float] = []
    on_cpu: list[float] = []
    for i in range(pairs):
        for runs, cpus, on in ((off_runs, off_cpu, False), (on_runs, on_cpu, True)):
            steps_per_s, cpu = one_run(db, sagas, threads, on=on, flags=flags)
            runs.append(steps_per_s)
            cpus.append(cpu)
        print(f"  pair {i + 1}: off {off_runs[-1]:,.0f} steps/s ({off_cpu[-1]:.0f} us CPU "
              f"per step), on {on_runs[-1]:,.0f} ({on_cpu[-1]:.0f} us)", flush=True)
    result["results"] = {"off_steps_per_s": off_runs, "on_steps_per_s": on_runs,
                         "off_cpu_us_per_step": off_cpu, "on_cpu_us_per_step": on_cpu}
    result["summary"] = {
        "off_steps_per_s": median(off_runs), "on_steps_per_s": median(on_runs),
        "ratio": round(ratio(median(on_runs), median(off_runs)), 3),
        "off_cpu_us_per_step": median(off_cpu), "on_cpu_us_per_step": median(on_cpu),
        "cpu_ratio": round(ratio(median(off_cpu), median(on_cpu)), 3),
        "target_ratio": TARGET_RATIO,
    }
    summary = result["summary"]
    print_table(f"telemetry: {sagas:,} sagas x 3 no-op steps, 1 process x {threads} threads, "
                f"median of {pairs} pair(s)",
                ["off steps/s", "on steps/s", "on/off", "off CPU us/step", "on CPU us/step",
                 "off/on CPU", "target"],
                [[summary["off_steps_per_s"], summary["on_steps_per_s"], summary["ratio"],
                  summary["off_cpu_us_per_step"], summary["on_cpu_us_per_step"],
                  summary["cpu_ratio"], TARGET_RATIO]])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("telemetry", "throughput with traces and metrics on, against off")
    p.add_argument("--sagas", type=int, help=f"sagas per run (default {SAGAS:,}, quick 1,000)")
    p.add_argument("--pairs", type=int, help=f"off/on pairs (default {PAIRS}, quick 1)")
    p.add_argument("--threads", type=int, default=THREADS,
                   help=f"worker threads (default {THREADS})")
    p.add_argument("--on", default=" ".join(ON),
                   help=f"the worker's options when on (default {' '.join(ON)!r})")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, sagas=args.sagas or (1_000 if args.quick else SAGAS),
               pairs=args.pairs or (1 if args.quick else PAIRS), threads=args.threads,
               flags=args.on.split(), results_dir=args.results)


def main(argv: list[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
