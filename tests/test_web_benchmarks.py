"""Smoke runs of the dashboard's benchmarks at tiny sizes (no thresholds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import steplog_cost, web_pages
from benchmarks.harness import Database
from saga.testing import pgbench_path


def test_web_pages(dsn: str, tmp_path: Path) -> None:
    web_pages.run(Database(dsn, "test"), rows=300, requests=2, results_dir=tmp_path)
    result = json.loads((tmp_path / "web_pages.json").read_text())
    assert {r["page"] for r in result["results"]} >= {"overview", "instances", "instance"}
    assert all(0 < r["p50_ms"] <= r["p99_ms"] for r in result["results"])


@pytest.mark.skipif(pgbench_path() is None, reason="no pgbench binary")
def test_steplog_cost(dsn: str, tmp_path: Path) -> None:
    steplog_cost.run(Database(dsn, "test"), sagas=30, repeat=1, limit_seconds=1,
                     results_dir=tmp_path)
    result = json.loads((tmp_path / "steplog_cost.json").read_text())
    assert [r["variant"] for r in result["results"]] == list(steplog_cost.VARIANTS)
    [logged] = [r for r in result["results"] if r["variant"] == "log on"]
    assert logged["logged_rows"] == 90  # three steps a saga, each recorded
    assert all(r["steps_per_s"] > 0 for r in result["results"])
