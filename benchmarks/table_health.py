"""Table health under churn: what a long run leaves in the instance table. Dead tuples,
the share of HOT updates (no index entries written), and the sizes of the table and of
each index, read from pg_stat_user_tables and pg_relation_size:

- seeded:        the sagas inserted, nothing run;
- after run:     STEPS steps run by one worker (8 threads), autovacuum left on;
- after VACUUM:  a plain VACUUM (space is reusable, files do not shrink);
- after purge:   `python -m saga purge --older-than 0s` (every COMPLETE row deleted)
                 and a VACUUM, if this version of saga has the purge command.

Default 300,000 steps (about 2-3 minutes here); the issue's 1,000,000 is
`--steps 1000000`.

    python -m benchmarks.table_health [--quick] [--steps 300000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from . import apps, harness
from .harness import (
    ROOT,
    Conn,
    Database,
    Result,
    envelope,
    print_table,
    write_result,
)
from .workers import run_sagas, seed, table

STEPS: Final = 300_000
THREADS: Final = 8
MB: Final = 2**20

_STATS = """
SELECT n_live_tup, n_dead_tup, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del,
       autovacuum_count, autoanalyze_count,
       pg_relation_size(relid), pg_table_size(relid), pg_indexes_size(relid)
  FROM pg_stat_user_tables WHERE relid = %s::regclass"""
_INDEXES = """
SELECT indexrelname, pg_relation_size(indexrelid)
  FROM pg_stat_user_indexes WHERE relid = %s::regclass ORDER BY indexrelname"""


def snapshot(conn: Conn, relation: str, phase: str) -> dict[str, Any]:
    """The table's counters and sizes now, once the statistics have settled."""
    def read() -> dict[str, Any]:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(_STATS, (relation,)).fetchone()
        assert row is not None
        (live, dead, ins, upd, hot, dele, autovacuum, autoanalyze,
         heap, table_size, indexes) = row
        return {
            "phase": phase, "live": live, "dead": dead, "inserted": ins, "updated": upd,
            "hot_updated": hot, "deleted": dele,
            "hot_ratio": round(hot / upd, 3) if upd else None,
            "autovacuums": autovacuum, "autoanalyzes": autoanalyze,
            "heap_mb": round(heap / MB, 2), "table_mb": round(table_size / MB, 2),
            "indexes_mb": round(indexes / MB, 2),
            "index_mb": {name: round(size / MB, 2)
                         for name, size in conn.execute(_INDEXES, (relation,))},
        }
    # Backends report their counters when they exit or every second or so: wait until
    # two reads agree.
    conn.execute("SELECT pg_stat_force_next_flush()")
    last = read()
    for _ in range(40):
        time.sleep(0.25)
        now = read()
        if now == last:
            break
        last = now
    return last


def purge(db: Database, schema: str) -> float | None:
    """Run `python -m saga purge` on every COMPLETE row; its seconds, None if unavailable."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "saga", "purge", "--dsn", db.dsn, "--schema", schema,
         "--older-than", "0s", "--json"], cwd=ROOT, capture_output=True, text=True,
        timeout=600, check=False)
    if done.returncode != 0:
        print(f"purge unavailable ({done.returncode}): {done.stderr.strip()[-300:]}",
              file=sys.stderr)
        return None
    json.loads(done.stdout)  # it answered what it was asked
    return time.monotonic() - began


def run(db: Database, *, steps: int = STEPS, threads: int = THREADS,
        results_dir: Path | None = None) -> Result:
    """Seed, run, vacuum, purge; print and write `table_health.json`."""
    sagas = max(1, steps // len(apps.STEPS))
    result = envelope("table_health", db, {"steps": sagas * len(apps.STEPS), "sagas": sagas,
                                           "threads": threads})
    phases = []
    with db.schema("health") as schema, db.connect() as conn:
        relation = table(schema).as_string(conn)
        work = seed(conn, schema, sagas)
        # Report the inserts before ANALYZE sets n_live_tup, or they would count twice.
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute(f"ANALYZE {relation}")
        phases.append(snapshot(conn, relation, "seeded"))
        done = run_sagas(db, schema, sagas, threads=threads, first=work)
        phases.append(snapshot(conn, relation, "after run"))
        conn.execute(f"VACUUM {relation}")
        phases.append(snapshot(conn, relation, "after VACUUM"))
        purged = purge(db, schema)
        if purged is not None:
            conn.execute(f"VACUUM {relation}")
            phases.append({**snapshot(conn, relation, "after purge + VACUUM"),
                           "purge_seconds": round(purged, 2)})
    result["run"] = done.as_dict()
    result["results"] = phases
    ran = phases[1]
    result["summary"] = {
        "updates_per_step": round((ran["updated"] - phases[0]["updated"]) / done.steps, 2)
        if done.steps else None,
        "hot_ratio": ran["hot_ratio"], "dead_after_run": ran["dead"],
        "table_mb_after_run": ran["table_mb"], "indexes_mb_after_run": ran["indexes_mb"],
        "autovacuums_during_run": ran["autovacuums"],
    }
    names = sorted({n for p in phases for n in p["index_mb"]})
    print_table(f"table health: {done.steps:,} steps ({done.steps_per_s:,.0f} steps/s), "
                f"{result['summary']['updates_per_step']} updates per step",
                ["phase", "live", "dead", "updates", "HOT", "HOT %", "autovacuums",
                 "heap MB", "indexes MB", *names],
                [[p["phase"], p["live"], p["dead"], p["updated"], p["hot_updated"],
                  None if p["hot_ratio"] is None else round(100 * p["hot_ratio"], 1),
                  p["autovacuums"], p["heap_mb"], p["indexes_mb"],
                  *(p["index_mb"].get(n) for n in names)] for p in phases])
    write_result(result, results_dir)
    return result


def arguments() -> argparse.ArgumentParser:
    return harness.long_run_parser(
        "table_health", "dead tuples, HOT updates and sizes after a long run", STEPS, THREADS)


def execute(db: Database, args: argparse.Namespace) -> Result:
    steps = args.steps or (harness.QUICK_STEPS if args.quick else STEPS)
    return run(db, steps=steps, threads=args.threads, results_dir=args.results)


def main(argv: Sequence[str] | None = None) -> int:
    return harness.main(arguments(), execute, argv)


if __name__ == "__main__":
    sys.exit(main())
