"""Live: sagas started by K producer threads (`start()`, one at a time each) while one
worker process of 8 threads runs them, the shape a web application gives the worker;
next to a backlog inserted first and then drained, for comparison.

Each run is measured end to end on the database's clock (first `created_at` to last
`updated_at` of its sagas; for the backlog, from the runner's start), and reports:

- steps/s, and its ratio to a paired pgbench limit measured just before it on the same
  server: for a live run, the mix of `insert.sql` and `claim_advance.sql` in the ratio
  1:3 (a saga of three steps per start) at 8 clients; for the backlog, claim_advance
  alone at 8 clients (`benchmarks.limit`);
- transactions per step: the `xact_commit` delta of `pg_stat_database` for the run's
  database over the run (producers, worker and all), minus this process's own polling,
  divided by the steps; read after a pause that lets every backend flush its counters;
- worker CPU per step: user + system time of the worker process (the counters
  `getrusage` reports, read from `/proc/<pid>/stat` while it runs, so start-up and
  shutdown stay out) over the run, divided by the steps.

Targets (issue 10): live with 4 producers >= 0.7 of the mix, <= 1.5 transactions per step;
worker CPU per no-op step <= 100 us.

    python -m benchmarks.live [--quick] [--sagas 5000] [--producers 1,4]
"""

from __future__ import annotations

import argparse
import os
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
from .workers import WorkerProcess, seed, table, workers

SAGAS: Final = 5_000
PRODUCERS: Final = (1, 4)
THREADS: Final = 8
MIX: Final = {"insert": 1, "claim_advance": 3}  # one start per three-step saga
LIMIT_CLIENTS: Final = 8
LIMIT_SECONDS: Final = 5
IDLE: Final = 0.5  # seconds the worker idles before the producers begin
STATS_FLUSH: Final = 0.5  # for a closed connection's backend to exit (and count)
POLL: Final = 0.1
TIMEOUT: Final = 300.0
TARGET_RATIO: Final = 0.7
TARGET_TRANSACTIONS: Final = 1.5
TARGET_CPU_US: Final = 100.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process *pid* so far (utime and stime of /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def commits(db: Database) -> int:
    """The server's committed transactions in the database so far, read on a connection
    of its own (which counts one more once it has closed)."""
    with db.connect() as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def produce(db: Database, schema: str, sagas: int, producers: int) -> tuple[threading.Thread,
                                                                             list[float]]:
    """Start a thread that runs *producers* threads calling `start()` for *sagas* sagas in
    all; return it and a list that receives the producers' seconds when they are done."""
    spent: list[float] = []

    def main() -> None:
        with ConnectionPool(db.dsn, min_size=producers, max_size=producers, open=True,
                            name="live-producers") as pool, \
                apps.build(schema, pool=pool) as saga:
            pool.wait()  # every producer's connection is open before the clock starts

            def one(k: int) -> None:
                for i in range(k, sagas, producers):
                    saga.start(f"live-{i}", "first", {"n": i})

            threads = [threading.Thread(target=one, args=(k,), name=f"live-producer-{k}")
                       for k in range(producers)]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            spent.append(time.perf_counter() - began)

    thread = threading.Thread(target=main, name="live-producers", daemon=True)
    thread.start()
    return thread, spent


def measure(db: Database, schema: str, sagas: int, *, producers: int, threads: int = THREADS,
            timeout: float = TIMEOUT) -> dict[str, Any]:
    """Run *sagas* `bench` sagas on one worker process of *threads* threads: started live
    by *producers* threads, or (0 producers) inserted first as a backlog. Return the
    figures of the run (see the module docstring).

    A backend adds its counters to `pg_stat_database` when it goes idle, but at most once
    a second, else up to ten seconds later; at its exit, always. So the final count is
    read once the worker, the producers and the polling connection have all closed.
    """
    if producers == 0:
        with db.connect() as conn:
            seed(conn, schema, sagas)
    time.sleep(STATS_FLUSH)  # the backends that just closed have written their counters
    before = commits(db)
    spent: list[float] = []
    with db.connect() as conn, workers(db, schema, threads=threads) as (worker,):
        begun, polls = _registered(conn, schema, worker)
        if producers:
            time.sleep(IDLE)
        cpu = cpu_seconds(worker.pid)
        if producers:
            feeder, spent = produce(db, schema, sagas, producers)
        deadline = time.monotonic() + timeout
        while True:
            worker.check()
            polls += 1
            done, first, last = _progress(conn, schema)
            if done >= sagas or time.monotonic() > deadline:
                break
            time.sleep(POLL)
        cpu = cpu_seconds(worker.pid) - cpu
        if producers:
            feeder.join(timeout)
    time.sleep(STATS_FLUSH)
    # This process's own: the polls and the first commits() (the worker's start and stop,
    # a few transactions, stay in).
    transactions = commits(db) - before - polls - 1
    steps = done * len(apps.STEPS)
    start = first if producers else begun
    seconds = (last - start).total_seconds() if last is not None and start is not None else 0
    return {
        "producers": producers, "threads": threads, "sagas": sagas, "steps": steps,
        "complete": done >= sagas, "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 1) if seconds > 0 else float("nan"),
        "starts_per_s": round(sagas / spent[0], 1) if spent else None,
        "transactions": transactions,
        "transactions_per_step": round(ratio(transactions, steps), 3),
        "worker_cpu_s": round(cpu, 3),
        "worker_cpu_us_per_step": round(ratio(cpu * 1e6, steps), 1),
    }


def _registered(conn: Conn, schema: str, worker: WorkerProcess) -> tuple[Any, int]:
    """Wait until the worker has registered its runner: its start time, and the polls."""
    query = sql.SQL("SELECT min(started_at) FROM {t}").format(t=table(schema, "runner"))
    polls = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        worker.check()
        polls += 1
        row = conn.execute(query).fetchone()
        if row is not None and row[0] is not None:
            return row[0], polls
        time.sleep(0.01)
    raise TimeoutError("worker start: no runner row within 30s")


def _progress(conn: Conn, schema: str) -> tuple[int, Any, Any]:
    """Finished sagas in *schema* (all of them are the run's), first created, last update."""
    row = conn.execute(sql.SQL("""
        SELECT count(*) FILTER (WHERE status >= 2), min(created_at),
               max(updated_at) FILTER (WHERE status >= 2)
          FROM {t}""").format(t=table(schema))).fetchone()
    assert row is not None
    return int(row[0]), row[1], row[2]


def mix_limit(db: Database, *, clients: int = LIMIT_CLIENTS,
              duration: int = LIMIT_SECONDS) -> dict[str, Any]:
    """pgbench's insert + claim_advance mix (MIX) on a fresh seeded schema."""
    with db.schema("pgb") as schema, db.connect() as conn:
        first, last = seed(conn, schema, limit.ROWS, name=limit.SEED_NAME, run_after=-60.0)
        conn.execute(f"VACUUM ANALYZE {schema}.instance")
        return limit.pgbench_mix(db, schema, MIX, clients=clients, duration=duration,
                                 first=first, last=last)


def run(db: Database, *, sagas: int = SAGAS, producers: Sequence[int] = PRODUCERS,
        threads: int = THREADS, backlog: bool = True, limit_seconds: int = LIMIT_SECONDS,
        results_dir: Path | None = None) -> Result:
    """Measure the backlog (unless not *backlog*) and each producer count, each right
    after its own pgbench limit; print and write `live.json`."""
    result = envelope("live", db, {
        "sagas": sagas, "steps_per_saga": len(apps.STEPS), "producers": list(producers),
        "threads": threads, "mix": MIX, "limit_clients": LIMIT_CLIENTS,
        "limit_seconds": limit_seconds,
    })
    rows = []
    for k in ([0] if backlog else []) + list(producers):
        if k == 0:
            [paired] = limit.measure(db, scripts=[limit.CLAIM], clients=[LIMIT_CLIENTS],
                                     duration=limit_seconds)
            paired = {"scripts": {limit.CLAIM: 1}, **paired}
        else:
            paired = mix_limit(db, duration=limit_seconds)
        with db.schema("live") as schema:
            row = measure(db, schema, sagas, producers=k, threads=threads)
        row["workload"] = "backlog" if k == 0 else f"live, {k} producer{'s' * (k > 1)}"
        row["limit"] = paired
        row["limit_steps_per_s"] = paired["steps_per_s"]
        row["ratio"] = round(ratio(row["steps_per_s"], paired["steps_per_s"]), 3)
        rows.append(row)
        print(f"  {row['workload']}: {row['steps_per_s']:,.0f} steps/s, limit "
              f"{paired['steps_per_s']:,.0f}", flush=True)
    result["results"] = rows
    live4 = [r for r in rows if r["producers"] == 4]
    result["summary"] = {
        **({"ratio_4_producers": live4[0]["ratio"],
            "transactions_per_step_4_producers": live4[0]["transactions_per_step"],
            "worker_cpu_us_per_step_4_producers": live4[0]["worker_cpu_us_per_step"]}
           if live4 else {}),
        "target_ratio": TARGET_RATIO, "target_transactions_per_step": TARGET_TRANSACTIONS,
        "target_worker_cpu_us_per_step": TARGET_CPU_US,
    }
    report(result)
    write_result(result, results_dir)
    return result


def report(result: Result) -> None:
    s = result["settings"]
    print_table(
        f"live: {s['sagas']:,} sagas x {s['steps_per_saga']} no-op steps, one worker of "
        f"{s['threads']} threads; limit: pgbench at {s['limit_clients']} clients just before "
        f"each run (live: insert 1 : claim_advance 3; backlog: claim_advance)",
        ["workload", "steps/s", "limit", "ratio", "starts/s", "xact/step", "worker CPU us/step",
         "complete"],
        [[r["workload"], r["steps_per_s"], r["limit_steps_per_s"], r["ratio"],
          r["starts_per_s"], r["transactions_per_step"], r["worker_cpu_us_per_step"],
          r["complete"]] for r in result["results"]])


def arguments() -> argparse.ArgumentParser:
    p = parser("live", "sagas started while the worker runs, next to a pgbench mix")
    p.add_argument("--sagas", type=int, help=f"sagas per run (default {SAGAS:,}, quick 500)")
    p.add_argument("--producers", default=",".join(map(str, PRODUCERS)),
                   help="producer thread counts (default 1,4)")
    p.add_argument("--threads", type=int, default=THREADS, help="worker threads (default 8)")
    p.add_argument("--no-backlog", action="store_true", help="skip the backlog run")
    p.add_argument("--limit-seconds", type=int,
                   help=f"seconds per pgbench run (default {LIMIT_SECONDS}, quick 2)")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, sagas=args.sagas or (500 if args.quick else SAGAS),
               producers=[int(k) for k in args.producers.split(",")], threads=args.threads,
               backlog=not args.no_backlog,
               limit_seconds=args.limit_seconds or (2 if args.quick else LIMIT_SECONDS),
               results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
