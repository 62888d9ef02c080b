"""Concurrent start: `start()` from 8 threads of this process, no worker running, next to
pgbench's bare INSERT of a due row and the same INSERT with a `pg_notify` (to a channel
nobody listens to), at 8 clients, measured just before on the same server.

A NOTIFY takes a server-wide lock at commit, so every transaction that sends one
commits after the previous one: the INSERT + pg_notify figure is what `start()` is held
to while it notifies on every call. Two paths for `start()`:

- no runner: the schema has no runner row (no worker has ever run, or all are gone);
- idle runner: a runner row as an idle worker leaves it (inserted by SQL: nothing
  listens), the path on which a start must wake someone;
- busy runner: the same row flagged busy (`runner.idle`, migration 006; before it, the
  same as idle), whose threads claim again as soon as their step ends.

Target (issue 10): `start()` from 8 threads >= 0.7 of the bare INSERT at 8 clients.

    python -m benchmarks.concurrent_start [--quick] [--seconds 5] [--threads 8]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from psycopg import sql
from psycopg_pool import ConnectionPool

from . import apps, harness, limit
from .harness import Conn, Database, Result, envelope, parser, print_table, ratio, write_result
from .workers import seed, table

THREADS: Final = 8
SECONDS: Final = 5
PATHS: Final = ("no runner", "idle runner", "busy runner")
TARGET_RATIO: Final = 0.7

_RUNNER = """
INSERT INTO {t} (id, hostname, pid, serves, started_at, heartbeat_at, expires_at)
VALUES ('bench-idle', 'bench', 0, '{{"bench": ["first"]}}'::jsonb, statement_timestamp(),
        statement_timestamp(), statement_timestamp() + interval '1 hour')"""


def starts(db: Database, schema: str, *, threads: int, seconds: float) -> dict[str, Any]:
    """Call `start()` from *threads* threads for *seconds*; return the sagas/s."""
    counts = [0] * threads
    stop = threading.Event()
    with ConnectionPool(db.dsn, min_size=threads, max_size=threads, open=True,
                        name="concurrent-start") as pool, \
            apps.build(schema, pool=pool) as saga:
        pool.wait()

        def one(k: int) -> None:
            while not stop.is_set():
                saga.start(f"c-{k}-{counts[k]}", "first", {"n": counts[k]})
                counts[k] += 1

        workers = [threading.Thread(target=one, args=(k,), name=f"start-{k}")
                   for k in range(threads)]
        began = time.perf_counter()
        for t in workers:
            t.start()
        stop.wait(seconds)
        stop.set()
        for t in workers:
            t.join()
        spent = time.perf_counter() - began
    total = sum(counts)
    return {"threads": threads, "sagas": total, "seconds": round(spent, 3),
            "sagas_per_s": round(total / spent, 1)}


def _has_idle_flag(conn: Conn, schema: str) -> bool:
    row = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = %s"
                       " AND table_name = 'runner' AND column_name = 'idle'", (schema,))
    return bool(row.fetchone()[0])  # type: ignore[index]


def inserts(db: Database, *, clients: int, seconds: int) -> dict[str, float]:
    """pgbench's insert and insert_notify at *clients* clients: tps by script."""
    found = {}
    with db.schema("pgb") as schema, db.connect() as conn:
        first, last = seed(conn, schema, 100, name=limit.SEED_NAME)
        for script in limit.INSERTS:
            found[script] = limit.pgbench(db, schema, script, clients=clients,
                                          duration=seconds, first=first, last=last)["tps"]
    return found


def run(db: Database, *, threads: int = THREADS, seconds: int = SECONDS,
        results_dir: Path | None = None) -> Result:
    """Measure pgbench's two inserts, then `start()` on each path; print and write
    `concurrent_start.json`."""
    result = envelope("concurrent_start", db, {"threads": threads, "seconds": seconds,
                                               "paths": list(PATHS)})
    limits = inserts(db, clients=threads, seconds=seconds)
    rows = []
    for path in PATHS:
        with db.schema("cstart") as schema:
            if path != "no runner":
                with db.connect() as conn:
                    conn.execute(sql.SQL(_RUNNER).format(t=table(schema, "runner")))
                    if path == "busy runner" and _has_idle_flag(conn, schema):
                        conn.execute(sql.SQL("UPDATE {t} SET idle = false")
                                     .format(t=table(schema, "runner")))
            row = starts(db, schema, threads=threads, seconds=seconds)
        rows.append({"path": path, **row,
                     "vs_insert": round(ratio(row["sagas_per_s"], limits["insert"]), 3),
                     "vs_insert_notify": round(ratio(row["sagas_per_s"],
                                                     limits["insert_notify"]), 3)})
    result["limit"] = {"clients": threads, "insert_tps": limits["insert"],
                       "insert_notify_tps": limits["insert_notify"]}
    result["results"] = rows
    result["summary"] = {
        "insert_tps": limits["insert"], "insert_notify_tps": limits["insert_notify"],
        **{f"{r['path'].replace(' ', '_')}_per_s": r["sagas_per_s"] for r in rows},
        **{f"{r['path'].replace(' ', '_')}_vs_insert": r["vs_insert"] for r in rows},
        "target_ratio": TARGET_RATIO,
    }
    print_table(f"concurrent start: start() from {threads} threads, no worker; pgbench at "
                f"{threads} clients: INSERT {limits['insert']:,.0f} tps, INSERT + pg_notify "
                f"{limits['insert_notify']:,.0f} tps",
                ["path", "sagas", "seconds", "sagas/s", "/ INSERT", "/ INSERT+notify"],
                [[r["path"], r["sagas"], r["seconds"], r["sagas_per_s"], r["vs_insert"],
                  r["vs_insert_notify"]] for r in rows])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    p = parser("concurrent_start", "start() from 8 threads against pgbench's INSERT")
    p.add_argument("--seconds", type=int, help=f"per measurement (default {SECONDS}, quick 2)")
    p.add_argument("--threads", type=int, default=THREADS,
                   help=f"threads calling start(), and pgbench clients (default {THREADS})")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, threads=args.threads, seconds=args.seconds or (2 if args.quick else SECONDS),
               results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
