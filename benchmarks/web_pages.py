"""Dashboard page times next to a big table: p50 and p99 of each page, answered by the
WSGI app in this process (no HTTP server, so the figure is the app and its queries),
next to ROWS COMPLETE and ROWS PENDING instances.

The COMPLETE rows finished over the last ROWS seconds (about 12 days for a million), the
PENDING ones are due (a queue that has fallen behind), ERRORS rows failed; then VACUUM
ANALYZE, as autovacuum would have run by then. Each page is asked for REQUESTS times
after one warm-up request.

    python -m benchmarks.web_pages [--quick] [--rows 1000000] [--requests 50]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from saga.web import Access, Dashboard

from . import harness
from .harness import Database, Result, envelope, parser, percentile, print_table, write_result
from .workers import table

ROWS: Final = 1_000_000
ERRORS: Final = 1_000
REQUESTS: Final = 50

SEED: Final = """
INSERT INTO {t} (name, instance_id, step, input, status, run_after, created_at, updated_at,
                 error)
SELECT %(name)s, %(prefix)s || g, %(step)s, jsonb_build_object('n', g), %(status)s,
       statement_timestamp() - g * interval '1 second',
       statement_timestamp() - g * interval '1 second' - interval '1 minute',
       statement_timestamp() - g * interval '1 second',
       CASE WHEN %(status)s = 3 THEN 'RuntimeError: the card was declined' END
  FROM generate_series(1, %(n)s) AS g
"""


def pages(row_id: int, cursor: str, hour_ago: str) -> dict[str, str]:
    """The pages timed, by label: path and query string."""
    return {
        "overview": "/",
        "instances": "/instances",
        "instances, 2nd page (keyset)": f"/instances?{cursor}",
        "instances, status=error": "/instances?status=error",
        "instances, saga+status=complete": "/instances?saga=bench&status=complete",
        "instances, updated in the last hour": f"/instances?since={hour_ago}&status=complete",
        "instances, id prefix (rare)": "/instances?prefix=nobody-",
        "instance": f"/instances/{row_id}",
        "runners": "/runners",
        "bulk retry confirmation": "/bulk/retry?saga=bench",
    }


def seed(db: Database, schema: str, rows: int) -> dict[str, str]:
    """Seed the rows; return the page arguments that depend on them."""
    with db.connect() as conn:
        query = SEED.replace("{t}", table(schema).as_string(conn))
        for status, step, n, prefix in ((2, "third", rows, "done-"),
                                        (0, "first", rows, "queued-"),
                                        (3, "second", ERRORS, "failed-")):
            conn.execute(query, {"name": "bench", "prefix": prefix, "step": step,
                                 "status": status, "n": n})
        conn.execute(f"VACUUM ANALYZE {table(schema).as_string(conn)}")
        t = table(schema).as_string(conn)
        found = conn.execute(f"""
            SELECT (SELECT max(id) FROM {t}),
                   (SELECT 'before_at=' || replace(to_char(updated_at AT TIME ZONE 'UTC',
                           'YYYY-MM-DD"T"HH24:MI:SS.US'), ' ', '') || '&before_id=' || id
                      FROM {t} ORDER BY updated_at DESC, id DESC OFFSET 49 LIMIT 1),
                   to_char((now() - interval '1 hour') AT TIME ZONE 'UTC',
                           'YYYY-MM-DD"T"HH24:MI')""").fetchone()
    assert found is not None
    return {"row_id": found[0], "cursor": found[1], "hour_ago": found[2]}


def request(app: Dashboard, path: str) -> tuple[int, float]:
    """Ask *app* for *path*; return the status and the seconds it took."""
    where, _, query = path.partition("?")
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": where,
                               "QUERY_STRING": query, "SCRIPT_NAME": "",
                               "wsgi.input": io.BytesIO(), "HTTP_HOST": "localhost"}
    seen: list[str] = []
    began = time.perf_counter()
    body = b"".join(app(environ, lambda status, headers: seen.append(status)))
    took = time.perf_counter() - began
    assert body
    return int(seen[0].split()[0]), took


def run(db: Database, *, rows: int = ROWS, requests: int = REQUESTS,
        results_dir: Path | None = None) -> Result:
    result = envelope("web_pages", db, {"rows": rows, "errors": ERRORS,
                                        "requests": requests})
    found = []
    with db.schema("web") as schema:
        began = time.monotonic()
        arguments = seed(db, schema, rows)
        print(f"  seeded {2 * rows + ERRORS:,} rows in {time.monotonic() - began:.0f}s",
              flush=True)
        app = Dashboard(db.dsn, schema=schema, access=lambda environ: Access.FULL)
        try:
            for label, path in pages(**arguments).items():
                status, _ = request(app, path)  # warm-up: plans, pool, caches
                assert status == 200, (label, status)
                times = [request(app, path)[1] * 1000 for _ in range(requests)]
                found.append({"page": label, "path": path, "p50_ms": round(
                    percentile(times, 50), 2), "p99_ms": round(percentile(times, 99), 2)})
        finally:
            app.close()
    result["results"] = found
    result["summary"] = {r["page"]: [r["p50_ms"], r["p99_ms"]] for r in found}
    print_table(f"dashboard pages next to {rows:,} COMPLETE + {rows:,} PENDING + {ERRORS:,} "
                f"ERROR rows, {requests} requests each (ms)",
                ["page", "p50", "p99"], [[r["page"], r["p50_ms"], r["p99_ms"]] for r in found])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("web_pages", "dashboard page times next to a big table")
    p.add_argument("--rows", type=int, help=f"COMPLETE and PENDING rows each (default "
                   f"{ROWS:,}, quick 20,000)")
    p.add_argument("--requests", type=int, help=f"requests per page (default {REQUESTS}, "
                   "quick 5)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, rows=args.rows or (20_000 if args.quick else ROWS),
               requests=args.requests or (5 if args.quick else REQUESTS),
               results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
