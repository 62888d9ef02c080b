"""The "observed" saga of tests/test_otel.py and tests/test_metrics.py.

With SAGA_TEST_SPANS set, importing this module sets up the OpenTelemetry SDK as an
application would, exporting every finished span as one JSON line to that file, for
the worker process (`--otel`) to use through the global provider.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from saga import Saga, SagaError, StepEvent

from . import SCHEMA

HOUR = 3600.0
_failures: dict[str, int] = {}  # attempts failed so far, by instance (one worker process)
_lock = threading.Lock()


def build(schema: str, dsn: str | None = None) -> Saga:
    """An "observed" saga on *schema*; failed attempts are retried after ~50 ms."""
    saga = Saga("observed", dsn, schema=schema, max_attempts=5, backoff_base=0.05,
                backoff_max=0.1)

    @saga.step
    def first(input: dict[str, Any]) -> object:
        return second(input)

    @saga.step
    def second(input: dict[str, Any]) -> object:
        return third(input, delay=HOUR)  # until someone calls `third`

    @saga.step
    def third(input: dict[str, Any]) -> object:
        return None

    @saga.step
    def flaky(input: dict[str, Any]) -> object:
        """Fail input["fail"] times, then complete."""
        with _lock:
            failed = _failures.get(input["id"], 0)
            if failed < input["fail"]:
                _failures[input["id"]] = failed + 1
                raise RuntimeError(f"flaky failure {failed + 1}")
        return None

    @saga.step
    def broken(input: dict[str, Any]) -> object:
        raise SagaError("no funds")

    @saga.step
    def hold(input: dict[str, Any]) -> object:
        """Wait (at most 30 s) until the file input["until"] exists."""
        deadline = time.monotonic() + 30
        while not Path(input["until"]).exists() and time.monotonic() < deadline:
            threading.Event().wait(0.02)
        return None

    return saga


class Audit:
    """A StepObserver for `--observer`: one line per event to $SAGA_TEST_AUDIT."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock, open(os.environ["SAGA_TEST_AUDIT"], "a", encoding="utf-8") as out:
            out.write(text + "\n")

    def step_started(self, event: StepEvent) -> None:
        self._write(f"started {event.instance} {event.step} {event.attempt}")

    def step_finished(self, event: StepEvent) -> None:
        self._write(f"finished {event.instance} {event.step} {event.outcome}")


def _export_spans(path: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    out = open(path, "a", encoding="utf-8")  # noqa: SIM115  # open for the process's life
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
        out=out, formatter=lambda span: span.to_json(indent=None) + "\n")))
    trace.set_tracer_provider(provider)


if os.environ.get("SAGA_TEST_SPANS"):
    _export_spans(os.environ["SAGA_TEST_SPANS"])

saga = build(SCHEMA)
audit = Audit()
not_an_observer = object()
