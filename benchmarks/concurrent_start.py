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
import resource
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
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
    """Call `start()` from *threads* threads for *seconds*; return the sagas/s, and this
    process's CPU per start (getrusage): near a second per second, Python is the limit."""
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
        began, cpu = time.perf_counter(), _cpu()
        for t in workers:
            t.start()
        stop.wait(seconds)
        stop.set()
        for t in workers:
            t.join()
        spent, cpu = time.perf_counter() - began, _cpu() - cpu
    total = sum(counts)
    return {"threads": threads, "sagas": total, "seconds": round(spent, 3),
            "sagas_per_s": round(total / spent, 1),
            "client_cpu_us_per_start": round(ratio(cpu * 1e6, total), 1),
            "client_cpu_share": round(cpu / spent, 2)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def run(db: Database, *, threads: int = THREADS, seconds: int = SECONDS, repeat: int = 1,
        results_dir: Path | None = None) -> Result:
    """Measure pgbench's two inserts, then `start()` on each path, *repeat* times in
    turn (the medians reported); print and write `concurrent_start.json`.

    Taking the paths in turn, each right after its limit, spreads a shared machine's
    changing load over all of them alike.
    """
    result = envelope("concurrent_start", db, {"threads": threads, "seconds": seconds,
                                               "paths": list(PATHS), "repeat": repeat})
    limits: dict[str, list[float]] = {script: [] for script in limit.INSERTS}
    runs: dict[str, list[dict[str, Any]]] = {path: [] for path in PATHS}
    for _ in range(repeat):
        for script, tps in inserts(db, clients=threads, seconds=seconds).items():
            limits[script].append(tps)
        for path in PATHS:
            with db.schema("cstart") as schema:
                _runner_row(db, schema, path)
                runs[path].append(starts(db, schema, threads=threads, seconds=seconds))
    insert, notify = median(limits["insert"]), median(limits["insert_notify"])
    rows = []
    for path, measured in runs.items():
        mid = sorted(measured, key=lambda r: float(r["sagas_per_s"]))[(len(measured) - 1) // 2]
        rows.append({"path": path, **mid,
                     "vs_insert": round(ratio(mid["sagas_per_s"], insert), 3),
                     "vs_insert_notify": round(ratio(mid["sagas_per_s"], notify), 3),
                     "all_sagas_per_s": [r["sagas_per_s"] for r in measured]})
    result["limit"] = {"clients": threads, "insert_tps": insert, "insert_notify_tps": notify,
                       "measured": limits}
    result["results"] = rows
    result["summary"] = {
        "insert_tps": insert, "insert_notify_tps": notify,
        **{f"{r['path'].replace(' ', '_')}_per_s": r["sagas_per_s"] for r in rows},
        **{f"{r['path'].replace(' ', '_')}_vs_insert": r["vs_insert"] for r in rows},
        "target_ratio": TARGET_RATIO,
    }
    print_table(f"concurrent start: start() from {threads} threads, no worker; pgbench at "
                f"{threads} clients: INSERT {insert:,.0f} tps, INSERT + pg_notify "
                f"{notify:,.0f} tps (medians of {repeat})",
                ["path", "sagas/s", "/ INSERT", "/ INSERT+notify", "client CPU us/start",
                 "client CPU share"],
                [[r["path"], r["sagas_per_s"], r["vs_insert"], r["vs_insert_notify"],
                  r["client_cpu_us_per_start"], r["client_cpu_share"]] for r in rows])
    write_result(result, results_dir)
    return result


def _runner_row(db: Database, schema: str, path: str) -> None:
    """Give *schema* the runner row *path* calls for (none, idle or busy)."""
    if path == "no runner":
        return
    with db.connect() as conn:
        conn.execute(sql.SQL(_RUNNER).format(t=table(schema, "runner")))
        if path == "busy runner" and _has_idle_flag(conn, schema):
            conn.execute(sql.SQL("UPDATE {t} SET idle = false").format(t=table(schema, "runner")))


def arguments() -> argparse.ArgumentParser:
    p = parser("concurrent_start", "start() from 8 threads against pgbench's INSERT")
    p.add_argument("--seconds", type=int, help=f"per measurement (default {SECONDS}, quick 2)")
    p.add_argument("--threads", type=int, default=THREADS,
                   help=f"threads calling start(), and pgbench clients (default {THREADS})")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of every measurement, medians reported (default 1)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, threads=args.threads, seconds=args.seconds or (2 if args.quick else SECONDS),
               repeat=args.repeat, results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
