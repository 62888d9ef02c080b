"""OpenTelemetry (`saga.telemetry.otel`): spans in the caller and in the worker, one trace
across processes, links where a parent would make a trace unbounded, and the metrics.

The caller's spans go to the SDK's in-memory exporter; a worker process started here
exports its spans as JSON lines to a file (tests/apps/observed.py sets that up).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from saga import DuplicateSaga, Saga, SagaError, SagaNotFound, Status
from saga.telemetry import otel
from saga.telemetry.context import StoredTrace, parse
from tests.apps import observed
from tests.helpers import Db, wait_until
from tests.test_worker import Worker, worker_env

OBSERVED = "tests.apps.observed:saga"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """An SDK tracer provider that keeps finished spans in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    otel.uninstrument()
    provider.shutdown()


@pytest.fixture
def observed_saga(dsn: str, schema: str) -> Iterator[Saga]:
    with observed.build(schema, dsn) as s:
        s.init_db()
        yield s


@pytest.fixture
def traced_worker(dsn: str, schema: str, tmp_path: Path) -> Iterator[Callable[[], Path]]:
    """Start `python -m saga.worker tests.apps.observed:saga --otel`; return the file its
    spans go to. The worker is stopped (SIGTERM) when the test ends."""
    started: list[Worker] = []
    path = tmp_path / "spans.jsonl"

    def start() -> Path:
        env = {**worker_env(dsn, schema), "SAGA_TEST_SPANS": str(path)}
        started.append(Worker([OBSERVED, "--otel", "--workers", "2"], env, tmp_path / "w"))
        return path

    yield start
    for worker in started:
        if worker.alive:
            worker.send(signal.SIGTERM)
            assert worker.wait(20) == 0, worker.stderr()


def hex_id(value: int, width: int) -> str:
    return f"0x{value:0{width}x}"


def traceparent_prefix(span: ReadableSpan) -> str:
    """The W3C traceparent of *span*, but its flags."""
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-"


def read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def worker_spans(path: Path, instance: str, count: int) -> list[dict[str, Any]]:
    """The worker's spans of *instance*, once there are *count*, in the order they ended."""
    def found() -> list[dict[str, Any]] | None:
        if not path.exists():
            return None
        mine = [s for s in read_spans(path) if s["attributes"].get("saga.instance") == instance]
        return mine if len(mine) >= count else None
    return wait_until(found, timeout=20)


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def test_three_steps_in_a_worker_process_are_in_the_trace_of_start(
    spans: tuple[TracerProvider, InMemorySpanExporter], observed_saga: Saga,
    traced_worker: Callable[[], Path],
) -> None:
    provider, exporter = spans
    otel.instrument(provider)
    s = observed_saga
    s.start("tx-1", "first", {"id": "tx-1"})
    path = traced_worker()
    wait_until(lambda: s.get("tx-1").step == "third", timeout=20)  # waiting for a call
    s.call("tx-1", "third", {"id": "tx-1"})
    wait_until(lambda: s.get("tx-1").status == Status.COMPLETE, timeout=20)
    first, second, third = worker_spans(path, "tx-1", 3)

    start = only(exporter.get_finished_spans(), "saga start observed")
    call = only(exporter.get_finished_spans(), "saga call observed")
    assert start.kind == SpanKind.PRODUCER
    assert call.kind == SpanKind.PRODUCER
    assert dict(start.attributes or {}) == {"saga.name": "observed", "saga.step": "first",
                                            "saga.operation": "start", "saga.instance": "tx-1"}
    trace_id = hex_id(start.context.trace_id, 32)
    for span, step, outcome in [(first, "first", "continued"), (second, "second", "delayed"),
                                (third, "third", "complete")]:
        assert span["name"] == f"saga step observed.{step}"
        assert span["kind"] == "SpanKind.CONSUMER"
        assert span["context"]["trace_id"] == trace_id  # one trace, across processes
        assert span["parent_id"] == hex_id(start.context.span_id, 16)
        attributes = span["attributes"]
        assert (attributes["saga.name"], attributes["saga.instance"], attributes["saga.step"],
                attributes["saga.attempt"], attributes["saga.outcome"]) == (
                    "observed", "tx-1", step, 1, outcome)
        assert span["status"]["status_code"] == "UNSET"
    # Only the claimed steps have a claim delay; only the called one a link, to the call.
    assert "saga.claim_delay" in first["attributes"]
    assert "saga.claim_delay" not in second["attributes"]
    assert first["links"] == second["links"] == []
    [link] = third["links"]
    assert link["context"]["span_id"] == hex_id(call.context.span_id, 16)
    assert link["context"]["trace_id"] == hex_id(call.context.trace_id, 32)
    assert link["attributes"] == {"saga.link": "call"}


def test_a_retried_step_shows_both_attempts_and_a_failure_its_exception(
    spans: tuple[TracerProvider, InMemorySpanExporter], observed_saga: Saga,
    traced_worker: Callable[[], Path],
) -> None:
    provider, exporter = spans
    otel.instrument(provider)
    s = observed_saga
    s.start("f-1", "flaky", {"id": "f-1", "fail": 1})
    s.start("b-1", "broken", {"id": "b-1"})
    path = traced_worker()
    wait_until(lambda: s.get("f-1").status == Status.COMPLETE, timeout=20)
    wait_until(lambda: s.get("b-1").status == Status.ERROR, timeout=20)
    failed, retried = worker_spans(path, "f-1", 2)
    [broken] = worker_spans(path, "b-1", 1)

    start = only([x for x in exporter.get_finished_spans()
                  if (x.attributes or {}).get("saga.instance") == "f-1"], "saga start observed")
    assert failed["context"]["trace_id"] == retried["context"]["trace_id"] == hex_id(
        start.context.trace_id, 32)
    assert [failed["attributes"]["saga.attempt"], retried["attributes"]["saga.attempt"]] == [1, 2]
    assert failed["attributes"]["saga.outcome"] == "retry"
    assert failed["status"] == {"status_code": "ERROR", "description": (
        "RuntimeError: flaky failure 1")}
    [event] = failed["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "RuntimeError"
    assert event["attributes"]["exception.message"] == "flaky failure 1"
    assert retried["attributes"]["saga.outcome"] == "complete"
    assert retried["status"]["status_code"] == "UNSET"
    assert retried["events"] == []

    assert broken["attributes"]["saga.outcome"] == "error"
    assert broken["status"] == {"status_code": "ERROR", "description": "no funds"}
    [event] = broken["events"]
    assert event["attributes"]["exception.type"].endswith("SagaError")
    assert event["attributes"]["exception.message"] == "no funds"


# -- in one process --------------------------------------------------------------------


def test_past_the_bounds_a_step_starts_its_own_trace_linked_to_the_start(
    spans: tuple[TracerProvider, InMemorySpanExporter], saga: Saga, db: Db,
) -> None:
    provider, exporter = spans
    observer = otel.instrument(provider, trace_claims=3, trace_hops=2)
    current: list[int] = []

    @saga.step
    def loop(n: int) -> object:
        current.append(trace.get_current_span().get_span_context().span_id)
        return loop(n - 1) if n > 0 else None

    saga.start("hops", loop, 3)  # one claim, four steps: two are children, two roots
    saga.start("claims", loop, 0)
    db.execute("UPDATE {s}.instance SET claims = 3 WHERE instance_id = 'claims'")
    saga.run(workers=1, drain=True, observers=[observer])

    def start_of(instance: str) -> ReadableSpan:
        return only([x for x in exporter.get_finished_spans()
                     if (x.attributes or {}).get("saga.instance") == instance],
                    "saga start test")

    steps = [x for x in exporter.get_finished_spans() if x.kind == SpanKind.CONSUMER]
    hops = sorted((x for x in steps if x.attributes["saga.instance"] == "hops"),
                  key=lambda x: x.start_time or 0)
    start = start_of("hops")
    assert len(hops) == 4
    for span in hops[:2]:
        assert span.parent is not None
        assert span.parent.span_id == start.context.span_id
        assert span.context.trace_id == start.context.trace_id
        assert not span.links
    for span in hops[2:]:
        assert span.parent is None
        assert span.context.trace_id != start.context.trace_id
        [link] = span.links
        assert link.context.span_id == start.context.span_id
        assert dict(link.attributes or {}) == {"saga.link": "start"}
    # While a step runs, its span is the current span: a step's own spans are children.
    assert current[:4] == [x.context.span_id for x in hops]

    [claimed] = [x for x in steps if x.attributes["saga.instance"] == "claims"]
    assert claimed.parent is None  # its fourth claim: past trace_claims
    assert [link.context.span_id for link in claimed.links] == [
        start_of("claims").context.span_id]


def test_api_spans_store_their_context_and_record_refusals(
    spans: tuple[TracerProvider, InMemorySpanExporter], saga: Saga, db: Db,
) -> None:
    provider, exporter = spans

    @saga.step
    def work(input: object) -> None: ...

    saga.start("plain", work)  # not instrumented: nothing stored, no span
    otel.instrument(provider)
    saga.start("one", work)
    assert saga.start_many(work, {"m1": 1, "m2": 2, "one": 3}) == ["one"]
    with pytest.raises(DuplicateSaga):
        saga.start("one", work)
    finished = exporter.get_finished_spans()
    assert [x.name for x in finished] == ["saga start test", "saga start_many test",
                                          "saga start test"]
    one, many, duplicate = finished
    assert (many.attributes or {})["saga.count"] == 3
    assert duplicate.status.status_code == StatusCode.ERROR
    assert [e.name for e in duplicate.events] == ["exception"]
    with pytest.raises(SagaNotFound):
        saga.call("nobody", work)
    refused = exporter.get_finished_spans()[-1]
    assert refused.name == "saga call test"
    assert refused.status.status_code == StatusCode.ERROR
    stored = dict(db.rows("SELECT instance_id, trace_parent FROM {s}.instance"))
    assert stored["plain"] is None
    assert stored["one"].startswith(traceparent_prefix(one))
    assert stored["m1"] == stored["m2"]
    assert stored["m1"].startswith(traceparent_prefix(many))


def test_steps_are_counted_and_the_backlog_observed_through_the_metrics_api(
    spans: tuple[TracerProvider, InMemorySpanExporter], saga: Saga,
) -> None:
    provider, _ = spans
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])

    @saga.step
    def work(input: int) -> object:
        if input < 0:
            raise SagaError("negative")
        return None

    observer = otel.instrument(provider, meters, sagas=[saga])
    saga.start_many(work, {"a": 1, "b": 2, "c": -1})
    saga.start("later", work, 1, delay=3600)  # not due: not in the backlog
    assert values(reader, "pgsaga.due_backlog") == {(("saga", "test"), ("step", "work")): 3}
    saga.run(workers=1, drain=True, observers=[observer])
    counted = values(reader, "pgsaga.steps")
    assert counted == {
        (("outcome", "complete"), ("saga", "test"), ("step", "work")): 2,
        (("outcome", "error"), ("saga", "test"), ("step", "work")): 1}
    assert values(reader, "pgsaga.due_backlog", after=1.1) == {
        (("saga", "test"), ("step", "work")): 0}
    observer.close()
    meters.shutdown()


def values(reader: InMemoryMetricReader, name: str,
           after: float = 0.0) -> dict[tuple[tuple[str, Any], ...], float]:
    """The points of metric *name* by their sorted attributes (the sum for a histogram)."""
    if after:
        import time
        time.sleep(after)  # the observer reads the gauges at most once a second
    data = reader.get_metrics_data()
    found: dict[tuple[tuple[str, Any], ...], float] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        key = tuple(sorted((point.attributes or {}).items()))
                        found[key] = getattr(point, "value", getattr(point, "sum", 0))
    return found


def test_the_stored_context_is_parsed_defensively() -> None:
    parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert parse(None) is None
    assert parse("") is None
    assert parse(f"{parent} 3") == StoredTrace(parent, 3, None)
    assert parse(f"- 1 {parent}") == StoredTrace(None, 1, parent)
    assert parse("- 1") is None
    assert parse(f"garbage 2 {parent}") == StoredTrace(None, 2, parent)
    assert parse(f"{parent} x") is None
    assert parse("00-" + "0" * 32 + "-" + "b" * 16 + "-01 1") is None  # invalid trace id
