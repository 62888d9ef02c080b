"""Statements: where the server's time goes, per named query of `sql/queries.sql`, while
a worker runs a backlog and a live workload (`benchmarks.live`).

`pg_stat_statements` with `track_planning = on` counts, for every statement, its calls,
how often it was planned, and the time spent executing and planning it. A statement
planned on every call (plans = calls) pays for a custom plan each time; one that
settles on a cached generic plan shows a handful of plans per connection.

The extension must be preloaded. On the throwaway embedded server (the default) this
module loads it itself (`ALTER SYSTEM`, then a restart of the cluster) and puts the
settings back at the end; on a server of your own (`--dsn`, SAGA_BENCH_DSN) set
`shared_preload_libraries = 'pg_stat_statements'` first. The counters are reset before
each workload, for the whole server: run this where nothing else is measured.

    python -m benchmarks.statements [--quick] [--sagas 5000] [--producers 4]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from saga.sqlfiles import named_queries, render
from saga.store import Store
from saga.testing import restart_embedded

from . import apps, harness, live
from .harness import Database, Result, envelope, parser, print_table, write_result

SAGAS: Final = 5_000
PRODUCERS: Final = 4
EXTENSION: Final = "pg_stat_statements"
OTHER: Final = "(other)"



class NotPreloaded(RuntimeError):
    """The server does not preload pg_stat_statements, and this module cannot restart it."""


_SETTINGS = (("shared_preload_libraries", EXTENSION), (f"{EXTENSION}.track_planning", "on"))


def fingerprint(text: str) -> str:
    """*text* with its parameters and constants blanked and its spacing collapsed, so that
    a query of `queries.sql` and the same query as pg_stat_statements shows it (with
    `$n` for parameters and for constants alike) compare equal."""
    text = re.sub(r"%\(\w+\)s|\$\d+", "?", text)
    text = re.sub(r"extract\(\s*\w+", "extract(?", text, flags=re.IGNORECASE)  # a constant too
    text = re.sub(r"'(?:[^']|'')*'", "?", text)
    text = re.sub(r"\b\d+(?:\.\d+)?\b", "?", text)
    text = re.sub(r"\b(?:true|false|null)\b", "?", text, flags=re.IGNORECASE)
    return " ".join(text.split()).lower()


def query_names(schema: str) -> dict[str, str]:
    """The named queries of saga rendered for *schema*, by fingerprint; and the worker's
    folded statements (an outcome with the next claim, a claim with next_due)."""
    names = {fingerprint(render(text, schema)): name
             for name, text in named_queries().items()}
    folded = Store(schema).folded_queries(apps.NAME, apps.STEPS)
    names.update({fingerprint(text): name for name, text in folded.items()})
    return names


@contextlib.contextmanager
def statements_loaded(db: Database) -> Iterator[None]:
    """Make pg_stat_statements (with track_planning) available on *db* for the block.

    On an embedded server, preload it and restart; on exit put the settings back and
    restart again. Elsewhere, raise `NotPreloaded` unless the server preloads it already.
    """
    with db.connect() as conn:
        row = conn.execute("SHOW shared_preload_libraries").fetchone()
    loaded = row is not None and EXTENSION in str(row[0])
    if not loaded and db.source != "embedded":
        raise NotPreloaded(f"{EXTENSION} is not preloaded on this server: add "
                           f"shared_preload_libraries = '{EXTENSION}' to its configuration "
                           "and restart it (or run on the embedded server, the default)")
    if not loaded:
        _configure(db, reset=False)
    try:
        with db.connect() as conn:
            conn.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
        yield
    finally:
        if not loaded:
            with db.connect() as conn:
                conn.execute(f"DROP EXTENSION IF EXISTS {EXTENSION}")
            _configure(db, reset=True)


def _configure(db: Database, *, reset: bool) -> None:
    with db.connect() as conn:
        for name, value in _SETTINGS:
            conn.execute(f"ALTER SYSTEM RESET {name}" if reset
                         else f"ALTER SYSTEM SET {name} = '{value}'")
    restart_embedded(db.dsn)


def profile(db: Database, *, sagas: int, producers: int) -> list[dict[str, Any]]:
    """Run one `benchmarks.live` workload on a fresh schema with freshly reset counters;
    return one row per named query it ran (and one for everything else in the schema)."""
    with db.schema("stmt") as schema:
        with db.connect() as conn:
            conn.execute(f"SELECT {EXTENSION}_reset()")
        run = live.measure(db, schema, sagas, producers=producers)
        with db.connect() as conn:
            found = conn.execute(
                f"SELECT query, calls, plans, total_exec_time, total_plan_time "
                f"FROM {EXTENSION} WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) AND strpos(query, %s) > 0",
                (f'"{schema}"',)).fetchall()
    names = query_names(schema)
    totals: dict[str, list[float]] = {}
    others: list[str] = []
    for query, calls, plans, exec_ms, plan_ms in found:
        if f'"{schema}"."' in query:  # this module's own polling quotes the table name too
            continue
        name = names.get(fingerprint(query), OTHER)
        if name == OTHER:
            others.append(" ".join(query.split())[:160])
        t = totals.setdefault(name, [0, 0, 0.0, 0.0])
        t[0] += calls
        t[1] += plans
        t[2] += exec_ms
        t[3] += plan_ms
    rows = []
    for name, (calls, plans, exec_ms, plan_ms) in sorted(
            totals.items(), key=lambda item: -(item[1][2] + item[1][3])):
        rows.append({
            "query": name, "calls": int(calls), "plans": int(plans),
            "calls_per_saga": round(calls / sagas, 2),
            "exec_us": round(exec_ms * 1000 / calls, 1) if calls else None,
            "plan_us": round(plan_ms * 1000 / plans, 1) if plans else None,
            "total_ms": round(exec_ms + plan_ms, 1),
        })
    return [{"workload": "backlog" if producers == 0 else f"live, {producers} producers",
             "run": run, "other_statements": others}, *rows]


def run(db: Database, *, sagas: int = SAGAS, producers: int = PRODUCERS,
        results_dir: Path | None = None) -> Result:
    """Profile the backlog and the live workload; print and write `statements.json`."""
    result = envelope("statements", db, {"sagas": sagas, "producers": producers,
                                         "steps_per_saga": len(apps.STEPS)})
    result["results"] = []
    try:
        with statements_loaded(db):
            for k in (0, producers):
                head, *rows = profile(db, sagas=sagas, producers=k)
                result["results"].append({**head, "queries": rows})
                report(head, rows, sagas)
    except NotPreloaded as e:  # in `python -m benchmarks --dsn ...`: say so, go on
        print(f"statements skipped: {e}", flush=True)
        result["skipped"] = str(e)
    write_result(result, results_dir)
    return result


def report(head: dict[str, Any], rows: Sequence[dict[str, Any]], sagas: int) -> None:
    r = head["run"]
    print_table(
        f"statements, {head['workload']}: {sagas:,} sagas, {r['steps_per_s']:,.0f} steps/s; "
        "exec and plan: mean us per execution and per planning",
        ["query", "calls", "plans", "calls/saga", "exec us", "plan us", "total ms"],
        [[q["query"], q["calls"], q["plans"], q["calls_per_saga"], q["exec_us"], q["plan_us"],
          q["total_ms"]] for q in rows])


def arguments() -> argparse.ArgumentParser:
    p = parser("statements", "pg_stat_statements per named query, backlog and live")
    p.add_argument("--sagas", type=int, help=f"sagas per workload (default {SAGAS:,}, quick 500)")
    p.add_argument("--producers", type=int, default=PRODUCERS,
                   help=f"producer threads of the live workload (default {PRODUCERS})")
    return p


def execute(db: Database, args: argparse.Namespace) -> Result:
    return run(db, sagas=args.sagas or (500 if args.quick else SAGAS),
               producers=args.producers, results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
