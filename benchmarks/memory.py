"""Memory: the resident set (VmRSS) of one worker process while it runs STEPS no-op
steps, sampled at every progress poll; the curve and its growth.

Growth is reported twice: from the first sample (the worker registered, work about to
start) to the last, which the target is about; and from the end of the warm-up (once
WARMUP of the steps are done: pool connections, prepared statements, caches) to the
last, which is what a leak would show.

Target (issue 3): growth < 20 MB over 200,000 steps.

    python -m benchmarks.memory [--quick] [--steps 200000] [--threads 8]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from . import apps, harness
from .harness import Database, Result, envelope, print_table, write_result
from .workers import WorkerProcess, run_sagas

STEPS: Final = 200_000
THREADS: Final = 8
WARMUP: Final = 0.05  # share of the steps after which the warm-up counts as over
TARGET_MB: Final = 20.0
SHOWN: Final = 11  # samples printed (all of them go to the JSON)


def run(db: Database, *, steps: int = STEPS, threads: int = THREADS, poll: float = 0.5,
        results_dir: Path | None = None) -> Result:
    """Run the steps on one worker, sampling its RSS; print and write `memory.json`."""
    sagas = max(1, steps // len(apps.STEPS))
    result = envelope("memory", db, {"steps": sagas * len(apps.STEPS), "sagas": sagas,
                                     "threads": threads, "poll": poll})
    samples: list[dict[str, Any]] = []

    def sample(seconds: float, done: int, procs: list[WorkerProcess]) -> None:
        rss = procs[0].rss_kb()
        if rss:
            samples.append({"seconds": round(seconds, 2), "steps": done,
                            "rss_mb": round(rss / 1024, 2)})

    with db.schema("mem") as schema:
        done = run_sagas(db, schema, sagas, threads=threads, poll=poll, sample=sample)
    if not samples:
        raise RuntimeError("no RSS sample: the worker exited before the first poll")
    first, last = samples[0], samples[-1]
    warm = next((s for s in samples if s["steps"] >= WARMUP * done.steps), first)
    result["run"] = done.as_dict()
    result["samples"] = samples
    result["summary"] = {
        "rss_first_mb": first["rss_mb"], "rss_warm_mb": warm["rss_mb"],
        "rss_last_mb": last["rss_mb"], "rss_max_mb": max(s["rss_mb"] for s in samples),
        "growth_mb": round(last["rss_mb"] - first["rss_mb"], 2),
        "growth_after_warmup_mb": round(last["rss_mb"] - warm["rss_mb"], 2),
        "target_growth_mb": TARGET_MB,
    }
    stride = max(1, (len(samples) - 1) // (SHOWN - 1))
    shown = samples[::stride]
    if shown[-1] is not last:
        shown.append(last)
    print_table(f"memory: worker RSS over {done.steps:,} steps ({threads} threads, "
                f"{done.steps_per_s:,.0f} steps/s); growth "
                f"{result['summary']['growth_mb']:+.1f} MB, after warm-up "
                f"{result['summary']['growth_after_warmup_mb']:+.1f} MB",
                ["seconds", "steps", "RSS MB"],
                [[s["seconds"], s["steps"], s["rss_mb"]] for s in shown])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    return harness.long_run_parser("memory", "worker RSS over many steps", STEPS, THREADS)


def execute(db: Database, args: argparse.Namespace) -> Result:
    steps = args.steps or (harness.QUICK_STEPS if args.quick else STEPS)
    return run(db, steps=steps, threads=args.threads, results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
