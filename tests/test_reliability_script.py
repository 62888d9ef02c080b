"""scripts/reliability.py writes docs/RELIABILITY.md only from a whole run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "scripts" / "reliability.py"
DOC = ROOT / "docs" / "RELIABILITY.md"


def saved_run(folder: Path, tests: list[str]) -> None:
    """A run as `--keep` saves it, with one figure for each of *tests*."""
    (folder / "figures").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({
        "label": "a run", "short": "run", "exit": 0, "seconds": 60.0,
        "date": "2026-12-01 12:00 UTC", "python": "3.11", "machine": "Linux, 2 CPUs"}))
    for i, test in enumerate(tests):
        (folder / "figures" / f"{i}.json").write_text(json.dumps({
            "test": test, "postgres": "18.6", "fault": "A fault", "load": "some",
            "injected": "1 x kill -9", "lost": 0, "running": 0, "reexecuted": 1,
            "recovery": "1 s", "details": {}}))


def render_only(folder: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--render-only", str(folder), *more],
                          cwd=ROOT, capture_output=True, text=True, check=False)


def test_a_run_missing_faults_leaves_the_document_alone(tmp_path: Path) -> None:
    before = DOC.read_text()
    saved_run(tmp_path / "0", ["tests/faults/test_cuts.py::test_cut"])
    try:
        done = render_only(tmp_path)
        assert DOC.read_text() == before
    finally:
        DOC.write_text(before)
    assert done.returncode == 1
    assert "no figures from test_kill_storm" in done.stdout
    assert "docs/RELIABILITY.md left as it is" in done.stdout
    written = (tmp_path / "RELIABILITY.md").read_text()
    assert "A fault" in written


def test_a_whole_run_is_rendered_with_its_history_labelled(tmp_path: Path) -> None:
    from scripts.reliability import FAULTS

    saved_run(tmp_path / "0", [f"tests/faults/{module}.py::test_x" for module, _ in FAULTS])
    out = tmp_path / "out.md"
    done = render_only(tmp_path, "--output", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    assert "## What the suite found (hand-written history)" in text
    assert "a hand-written history kept in that script" in text.split("\n## ")[0]
