"""Smoke runs of every benchmark at tiny sizes, so that `benchmarks/` never rots.

No thresholds: each run must finish and write a result whose figures are positive.
The worker processes and pgbench are real; the server is the session's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import psycopg
import pytest

from benchmarks import (
    backlog,
    bulk_start,
    chart,
    concurrent_start,
    keyed,
    latency,
    limit,
    live,
    memory,
    schedules,
    statements,
    table_health,
    telemetry,
    throughput,
)
from benchmarks.__main__ import main as run_suite
from benchmarks.harness import RESULTS_DIR, Database, percentile
from saga.sqlfiles import named_queries
from saga.testing import embedded_cluster, pgbench_path

needs_pgbench = pytest.mark.skipif(pgbench_path() is None, reason="no pgbench binary")


@pytest.fixture
def db(dsn: str) -> Database:
    return Database(dsn, "test")


def written(folder: Path, name: str) -> dict[str, Any]:
    """The result file *name* in *folder*, checked for the common head."""
    result: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    assert result["benchmark"] == name
    assert result["machine"]["cores"] >= 1
    assert result["server"]["server_version"]
    assert result["server"]["fsync"] in ("on", "off")
    assert result["date"]
    return result


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not math.isnan(value) and value > 0


@needs_pgbench
def test_limit(db: Database, tmp_path: Path) -> None:
    limit.run(db, clients=[2], duration=1, results_dir=tmp_path)
    result = written(tmp_path, "limit")
    assert {r["script"] for r in result["results"]} == set(limit.SCRIPTS)
    for r in result["results"]:
        assert positive(r["tps"])
        assert positive(r["steps_per_s"])
        assert r["failed"] == 0


@needs_pgbench
def test_keyed(db: Database, tmp_path: Path) -> None:
    keyed.run(db, sagas=30, waiting=200, threads=2, processes=1, results_dir=tmp_path)
    result = written(tmp_path, "keyed")
    for pair in result["results"]:
        assert pair["plain"]["complete"]
        assert pair["keyed"]["complete"]
        assert pair["keyed"]["errors"] == 0
        assert positive(pair["ratio"])
    assert positive(result["claim_cost"]["saturated_ms"])


def test_throughput_and_chart(db: Database, tmp_path: Path) -> None:
    png = tmp_path / "threads.png"
    throughput.run(db, sagas=30, threads=[2], processes=[(2, 1)], limit_seconds=1,
                   limit_clients=[2], results_dir=tmp_path, chart_path=png)
    result = written(tmp_path, "throughput")
    assert [(r["processes"], r["threads"]) for r in result["results"]] == [(1, 2), (2, 1)]
    for r in result["results"]:
        assert r["complete"]
        assert r["errors"] == 0
        assert r["steps"] == 90
        assert positive(r["steps_per_s"])
        assert positive(r["ratio"])
    assert positive(result["limit"]["claim_steps_per_s"])
    assert png.read_bytes().startswith(b"\x89PNG")


def test_latency(db: Database, tmp_path: Path) -> None:
    latency.run(db, trials_notify=5, trials_poll=3, threads=2, poll_interval=0.05, warmup=1,
                results_dir=tmp_path)
    result = written(tmp_path, "latency")
    assert [r["path"] for r in result["results"]] == ["notify", "poll"]
    for r in result["results"]:
        assert len(r["latencies_ms"]) == r["trials"]
        assert all(positive(v) for v in r["latencies_ms"])
        assert positive(r["p50_ms"])
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]


def test_telemetry(db: Database, tmp_path: Path) -> None:
    telemetry.run(db, sagas=100, pairs=1, threads=2, results_dir=tmp_path)
    result = written(tmp_path, "telemetry")
    assert positive(result["summary"]["off_steps_per_s"])
    assert positive(result["summary"]["on_steps_per_s"])
    assert positive(result["summary"]["ratio"])


def test_schedules(db: Database, tmp_path: Path) -> None:
    schedules.run(db, schedules=50, seconds=0.5, results_dir=tmp_path)
    result = written(tmp_path, "schedules")
    assert result["results"]["ticks"]["ticks_made"] == 50
    assert positive(result["summary"]["ticks_per_s"])
    assert [r["schedules"] for r in result["results"]["idle"]] == [0, 50]


def test_bulk_start(db: Database, tmp_path: Path) -> None:
    bulk_start.run(db, sagas=200, batches=[50, 100], loop_n=20, results_dir=tmp_path)
    result = written(tmp_path, "bulk_start")
    assert [r["method"] for r in result["results"]] == ["start", "start_many", "start_many"]
    for r in result["results"]:
        if "skipped" in r:  # start_many not there yet
            continue
        assert positive(r["sagas_per_s"])
        if r["method"] == "start_many":
            assert r["sagas"] == 200
            assert r["duplicates_reported"] == r["duplicates_expected"] == r["batch"]


@needs_pgbench
def test_live(db: Database, tmp_path: Path) -> None:
    live.run(db, sagas=20, producers=[2], threads=2, limit_seconds=1, results_dir=tmp_path)
    result = written(tmp_path, "live")
    assert [r["producers"] for r in result["results"]] == [0, 2]
    for r in result["results"]:
        assert r["complete"]
        assert r["steps"] == 60
        for key in ("steps_per_s", "ratio", "transactions_per_step", "limit_steps_per_s"):
            assert positive(r[key]), key
        assert r["worker_cpu_us_per_step"] >= 0
    mix = result["results"][1]["limit"]
    assert set(mix["tps_by_script"]) == set(live.MIX)
    assert mix["failed"] == 0
    assert positive(result["results"][1]["starts_per_s"])


@needs_pgbench
def test_concurrent_start(db: Database, tmp_path: Path) -> None:
    concurrent_start.run(db, threads=2, seconds=1, results_dir=tmp_path)
    result = written(tmp_path, "concurrent_start")
    assert [r["path"] for r in result["results"]] == list(concurrent_start.PATHS)
    assert positive(result["limit"]["insert_tps"])
    assert positive(result["limit"]["insert_notify_tps"])
    for r in result["results"]:
        assert positive(r["sagas_per_s"])
        assert positive(r["vs_insert"])


def test_statements_fingerprint_tells_the_queries_apart() -> None:
    prints = [statements.fingerprint(q) for q in named_queries().values()]
    assert len(set(prints)) == len(prints)
    # As pg_stat_statements shows a query: constants become parameters too.
    assert statements.fingerprint("SELECT a FROM t WHERE b = $1 AND c = 0 AND d = 'x'") \
        == statements.fingerprint("select a  from t\n where b = %(b)s and c = 1 and d = 'y'")


def test_statements(tmp_path: Path) -> None:
    """On an embedded cluster of its own, which it restarts to load pg_stat_statements."""
    with embedded_cluster() as dsn:
        statements.run(Database(dsn, "embedded"), sagas=20, producers=2,
                       results_dir=tmp_path)
        with psycopg.connect(dsn) as conn:  # the settings are back as they were
            [(preload,)] = conn.execute("SHOW shared_preload_libraries").fetchall()
        assert statements.EXTENSION not in preload
    result = written(tmp_path, "statements")
    assert [w["workload"] for w in result["results"]] == ["backlog", "live, 2 producers"]
    for w in result["results"]:
        queries = {q["query"]: q for q in w["queries"]}

        # A claim is claim_due, or folded: with next_due, or into an outcome.
        claims = sum(queries[n]["calls"] for n in ("claim_due", "claim_or_due",
                     "complete+claim", "schedule+claim", "fail+claim") if n in queries)
        assert claims >= 20
        assert sum(queries[n]["calls"] for n in ("complete", "complete+claim")
                   if n in queries) == 20
        assert queries["run_on"]["calls"] == 40
        assert all(q["plans"] > 0 for q in queries.values())
    assert {q["query"] for q in result["results"][1]["queries"]} >= {"insert_instance"}


def test_statements_need_a_preloading_server(db: Database, tmp_path: Path) -> None:
    with db.connect() as conn:
        [(preload,)] = conn.execute("SHOW shared_preload_libraries").fetchall()
    if statements.EXTENSION in preload:
        pytest.skip("this server preloads pg_stat_statements")
    given = Database(db.dsn, "given")  # not restartable
    result = statements.run(given, sagas=5, results_dir=tmp_path)
    assert "shared_preload_libraries" in result["skipped"]


def test_memory(db: Database, tmp_path: Path) -> None:
    memory.run(db, steps=300, threads=2, poll=0.1, results_dir=tmp_path)
    result = written(tmp_path, "memory")
    assert result["run"]["complete"]
    assert result["run"]["steps"] == 300
    assert result["samples"]
    assert all(positive(s["rss_mb"]) for s in result["samples"])
    assert positive(result["summary"]["rss_max_mb"])


@needs_pgbench
def test_backlog(db: Database, tmp_path: Path) -> None:
    backlog.run(db, rows=300, sagas=20, threads=2, scenarios=["empty", "unserved"],
                timeout=30, limit_seconds=1, limit_clients=2, results_dir=tmp_path)
    result = written(tmp_path, "backlog")
    rows = {r["scenario"]: r for r in result["results"]}
    assert set(rows) == {"empty", "unserved"}
    assert rows["empty"]["ratio"] == 1.0
    assert rows["unserved"]["backlog_rows"] == 600
    for r in rows.values():
        assert r["complete"]
        assert positive(r["steps_per_s"])
        assert positive(r["table_mb"])
        assert positive(r["ratio"])


def test_table_health(db: Database, tmp_path: Path) -> None:
    table_health.run(db, steps=300, threads=2, results_dir=tmp_path)
    result = written(tmp_path, "table_health")
    phases = {p["phase"]: p for p in result["results"]}
    assert {"seeded", "after run", "after VACUUM"} <= set(phases)
    assert phases["seeded"]["live"] == 100
    assert phases["after run"]["updated"] > 0
    assert phases["after VACUUM"]["dead"] == 0
    assert positive(result["summary"]["updates_per_step"])
    assert positive(phases["after run"]["table_mb"])


def test_suite_command(dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks --only ... --quick` runs the chosen benchmarks on --dsn."""
    assert run_suite(["--dsn", dsn, "--quick", "--only", "bulk_start",
                       "--results", str(tmp_path)]) == 0
    written(tmp_path, "bulk_start")
    assert "bulk start" in capsys.readouterr().out


def test_chart_from_saved_result(tmp_path: Path) -> None:
    result = {
        "results": [{"processes": 1, "threads": t, "steps_per_s": 100.0 * t} for t in (1, 2)]
        + [{"processes": 2, "threads": 2, "steps_per_s": 350.0}],
        "limit": {"claim_steps_per_s": 500.0, "clients": 8},
        "summary": {"target_ratio": 0.6}, "settings": {"sagas": 10},
        "machine": {"cores": 2}, "server": {"server_version": "18"},
    }
    saved = tmp_path / "throughput.json"
    saved.write_text(json.dumps(result))
    assert chart.main([str(saved), "--out", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").stat().st_size > 0
    # A run writing its results elsewhere leaves the README's chart alone.
    assert chart.default_path(RESULTS_DIR) == chart.PATH
    assert chart.default_path(tmp_path) == tmp_path / "threads.png"


def test_percentile() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert math.isnan(percentile([], 50))
