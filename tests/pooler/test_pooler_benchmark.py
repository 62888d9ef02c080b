"""A smoke run of `benchmarks.pooler` at a tiny size, so that it never rots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import pooler
from benchmarks.harness import Database


@pytest.mark.usefixtures("pgbouncer")  # skips (or fails in CI) without the binary
def test_pooler_benchmark_runs(dsn: str, tmp_path: Path) -> None:
    pooler.run(Database(dsn, "test"), sagas=60, threads=2, pool_size=1, wake_trials=3,
               results_dir=tmp_path)
    result = json.loads((tmp_path / "pooler.json").read_text())
    rows = {r["configuration"]: r for r in result["results"]}
    assert set(rows) == {"direct", "direct, --pooler", "pgbouncer, poll-only",
                         "pgbouncer, --listen-dsn"}
    for row in rows.values():
        assert row["complete"]
        assert row["steps_per_s"] > 0
        assert not math.isnan(row["ratio_to_direct"])
        assert row["wake_p50_ms"] > 0
    assert rows["direct"]["ratio_to_direct"] == 1.0
