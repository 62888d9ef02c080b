"""Prometheus metrics (`saga.telemetry.metrics`): a real worker process with
`--metrics-port`, scraped over HTTP while its sagas run."""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from saga import Saga, Status
from saga.telemetry import metrics
from saga.worker import parse_args
from tests.apps import observed
from tests.helpers import Db, wait_until
from tests.test_worker import ROOT, WORKER, Worker, worker_env

OBSERVED = "tests.apps.observed:saga"
SERVING = re.compile(r"metrics at http://127\.0\.0\.1:(\d+)/metrics")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def observed_saga(dsn: str, schema: str) -> Iterator[Saga]:
    with observed.build(schema, dsn) as s:
        s.init_db()
        yield s


def scrape(port: int) -> Samples:
    """Every sample of /metrics, by name and sorted labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def by(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The samples called *name*, by the values of the labels *keys*."""
    found = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            d = dict(labels)
            found[tuple(d[k] for k in keys)] = value
    return found


def test_counters_move_by_the_steps_run_and_the_backlog_gauge_matches_due_rows(
    dsn: str, schema: str, tmp_path: Path, observed_saga: Saga, db: Db,
) -> None:
    s = observed_saga
    release = tmp_path / "release"
    worker = Worker([OBSERVED, "--metrics-port", "0", "--workers", "1"],
                    worker_env(dsn, schema), tmp_path / "w")
    try:
        port = int(wait_until(lambda: SERVING.search(worker.stderr()), timeout=20).group(1))
        before = wait_until(lambda: (m := scrape(port)) and by(
            m, "pgsaga_live_runners", "schema") == {(schema,): 1} and m)
        assert by(before, "pgsaga_steps_total", "step", "outcome") == {}

        # One thread: one `hold` runs (until released), the other three wait, due.
        s.start_many("hold", {f"h{i}": {"id": f"h{i}", "until": str(release)}
                              for i in range(4)})
        s.start("later", "first", {"id": "later"}, delay=3600)  # not due: no backlog
        wait_until(lambda: db.one("SELECT count(*) FROM {s}.instance WHERE status = 1") == 1)
        during = scrape(port)
        due_rows = db.one("SELECT count(*) FROM {s}.instance WHERE status = 0 "
                          "AND run_after <= now()")
        assert due_rows == 3
        backlog = by(during, "pgsaga_due_backlog", "saga", "step")
        assert backlog[("observed", "hold")] == due_rows
        assert backlog[("observed", "first")] == 0
        assert set(backlog) == {("observed", step) for step in s.steps}
        assert by(during, "pgsaga_oldest_due_age_seconds", "step")[("hold",)] > 0
        assert by(during, "pgsaga_oldest_due_age_seconds", "step")[("first",)] == 0

        release.touch()
        s.start_many("first", {f"c{i}": {"id": f"c{i}"} for i in range(5)})
        wait_until(lambda: db.one("SELECT count(*) FROM {s}.instance WHERE status = 2") == 4
                   and db.one("SELECT count(*) FROM {s}.instance WHERE step = 'third'") == 5)
        # The counters move after each outcome is written: wait for the last one.
        after = wait_until(lambda: (m := scrape(port)) and sum(
            by(m, "pgsaga_steps_total", "step").values()) >= 14 and m)
        assert by(after, "pgsaga_steps_total", "saga", "step", "outcome") == {
            ("observed", "hold", "complete"): 4,
            ("observed", "first", "continued"): 5,
            ("observed", "second", "delayed"): 5}
        assert by(after, "pgsaga_step_duration_seconds_count", "step") == {
            ("hold",): 4, ("first",): 5, ("second",): 5}
        # One claim per `hold` and per `first`; `second` ran on at once after `first`.
        assert by(after, "pgsaga_step_claim_delay_seconds_count", "saga") == {("observed",): 9}
        assert set(by(after, "pgsaga_due_backlog", "step").values()) == {0}
        assert s.get("c0").status == Status.PENDING
    finally:
        worker.send(signal.SIGTERM)
        assert worker.wait(20) == 0, worker.stderr()


def test_an_exporter_in_a_process_of_ones_own(saga: Saga) -> None:
    @saga.step
    def work(input: object) -> None: ...

    exporter = metrics.serve([saga], 0)
    try:
        saga.start("a", work)
        saga.run(workers=1, drain=True, observers=[exporter.observer])
        samples = scrape(exporter.port)
        assert by(samples, "pgsaga_steps_total", "step", "outcome") == {("work", "complete"): 1}
        assert by(samples, "pgsaga_live_runners", "schema") == {(saga.schema,): 0}
    finally:
        exporter.close()


def test_metrics_options_are_checked() -> None:
    assert parse_args(["m:s"]).metrics_bind == "127.0.0.1"
    assert parse_args(["m:s", "--metrics-port", "9464"]).metrics_port == 9464
    with pytest.raises(SystemExit):
        parse_args(["m:s", "--metrics-port", "70000"])
    with pytest.raises(ValueError, match="port must be an integer"):
        metrics.serve([], -1)


def test_the_worker_hands_its_steps_to_an_observer_named_on_the_command_line(
    dsn: str, schema: str, tmp_path: Path, observed_saga: Saga,
) -> None:
    observed_saga.start("a", "first", {"id": "a"})
    observed_saga.start("b", "broken", {"id": "b"})
    audit = tmp_path / "audit.txt"
    env = {**worker_env(dsn, schema), "SAGA_TEST_AUDIT": str(audit)}
    done = subprocess.run([*WORKER, OBSERVED, "--drain", "--observer",
                           "tests.apps.observed:audit"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(audit.read_text().splitlines()) == sorted([
        "started a first 1", "finished a first continued",
        "started a second 1", "finished a second delayed",
        "started b broken 1", "finished b broken error"])
    refused = subprocess.run([*WORKER, OBSERVED, "--drain", "--observer",
                              "tests.apps.observed:not_an_observer"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    assert "'tests.apps.observed:not_an_observer' is a object, not a StepObserver" in (
        refused.stderr)
