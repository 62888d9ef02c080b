"""Without the telemetry extras (hidden from the import system), or with them installed
but not enabled, pgsaga imports and runs, and imports neither library."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SCRIPT = textwrap.dedent("""
    import importlib.abc, sys
    HIDDEN = ("opentelemetry", "prometheus_client")

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    dsn, schema, hide = sys.argv[1], sys.argv[2], sys.argv[3] == "hide"
    if hide:
        sys.meta_path.insert(0, Hide())
    from saga import Saga, Status
    import saga.worker

    with Saga("optional", dsn, schema=schema) as s:
        s.init_db()

        @s.step
        def work(input):
            return None

        s.start("a", work)
        s.start_many(work, {"b": 1})
        s.run(workers=1, drain=True)
        assert s.get("a").status == Status.COMPLETE and s.get("b").status == Status.COMPLETE
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN)
    assert not loaded, loaded
    if hide:
        for module in ("saga.telemetry.otel", "saga.telemetry.metrics"):
            try:
                __import__(module)
            except ImportError as e:
                print(module, "->", e)
            else:
                raise AssertionError(module + " imported")
        for option in (["--otel"], ["--metrics-port", "0"]):
            code = saga.worker.main(["tests.apps.observed:saga", "--drain", "--dsn", dsn,
                                     *option])
            print(option[0], "exit", code)
    print("ok")
""")


@pytest.mark.parametrize("mode", ["hide", "installed"])
def test_pgsaga_runs_without_importing_the_telemetry_libraries(
    dsn: str, schema: str, mode: str
) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, dsn, schema, mode], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={"SAGA_TEST_SCHEMA": schema, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "ok"
    if mode == "hide":
        assert lines[:4] == [
            "saga.telemetry.otel -> saga.telemetry.otel needs the otel extra: "
            "pip install 'pgsaga[otel]'",
            "saga.telemetry.metrics -> saga.telemetry.metrics needs the prometheus extra: "
            "pip install 'pgsaga[prometheus]'",
            "--otel exit 1", "--metrics-port exit 1"]
        assert "needs the otel extra" in done.stderr
        assert "needs the prometheus extra" in done.stderr
