"""The chart of `benchmarks/README.md`: steps/s against worker threads, next to the
pgbench claim+advance limit measured in the same run.

    python -m benchmarks.chart [results/throughput.json] [--out benchmarks/threads.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from .harness import RESULTS_DIR, Result

PATH: Final = Path(__file__).resolve().parent / "threads.png"


def default_path(results_dir: Path) -> Path:
    """Where a run writing to *results_dir* draws its chart: the README's chart for the
    default folder, else beside the results (a trial run must not replace it)."""
    return PATH if results_dir.resolve() == RESULTS_DIR.resolve() else results_dir / PATH.name


def draw(result: Result, path: Path = PATH) -> Path:
    """Draw *result* (a throughput result) to *path* as a PNG; return the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    rows = result["results"]
    single = sorted((r["threads"], r["steps_per_s"]) for r in rows if r["processes"] == 1)
    multi = [(r["processes"] * r["threads"], r["steps_per_s"], r["processes"], r["threads"])
             for r in rows if r["processes"] > 1]
    claim = float(result["limit"]["claim_steps_per_s"])
    target = float(result["summary"]["target_ratio"])

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    if single:
        ax.plot([t for t, _ in single], [s for _, s in single], "o-", color="tab:blue",
                label="pgsaga, 1 worker process")
    for total, steps, procs, per in multi:
        ax.plot([total], [steps], "s", color="tab:orange", markersize=8,
                label=f"pgsaga, {procs} processes x {per} threads")
    ax.axhline(claim, color="tab:red", linewidth=1.5,
               label=f"pgbench claim+advance, {result['limit']['clients']} clients, median "
                     f"({claim:,.0f}/s)")
    ax.axhline(claim * target, color="tab:red", linestyle="--", linewidth=1,
               label=f"target: {target:g} x the limit")
    ax.set_xscale("log", base=2)
    ticks = sorted({t for t, _ in single} | {m[0] for m in multi})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("worker threads (in total)")
    ax.set_ylabel("steps/s")
    ax.set_ylim(bottom=0, top=max([claim * 1.15] + [s * 1.15 for _, s in single]))
    machine = result["machine"]
    commit = f", pgsaga {machine['commit']}" if machine.get("commit") else ""
    ax.set_title(f"{result['settings']['sagas']:,} sagas x 3 no-op steps; "
                 f"{machine['cores']} cores, PostgreSQL {result['server']['server_version']}"
                 f"{commit}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
              frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.chart",
                                description="redraw the threads chart from a throughput result")
    p.add_argument("result", nargs="?", type=Path, default=RESULTS_DIR / "throughput.json")
    p.add_argument("--out", type=Path, default=PATH)
    args = p.parse_args(argv)
    print(draw(json.loads(args.result.read_text()), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
