"""The benchmark tables in the READMEs are generated from committed JSON, and match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "bench_report.py"


def test_every_benchmark_table_matches_its_committed_json() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_table_names_the_file_it_comes_from() -> None:
    for doc in (ROOT / "README.md", ROOT / "benchmarks" / "README.md"):
        text = doc.read_text()
        sections = text.split("<!-- bench:")[1:]
        assert sections, doc
        for section in sections:
            body = section.split("<!-- /bench:")[0]
            assert ".json" in body, (doc, section[:40])


def test_a_stale_table_is_reported(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        (results / path.name).write_text(path.read_text().replace('"p50_ms": ', '"p50_ms": 1'))
    done = subprocess.run([sys.executable, str(SCRIPT), "--check", "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "out of date" in done.stdout
