"""Prometheus metrics (the `pgsaga[prometheus]` extra: `prometheus_client`).

`python -m saga.worker ... --metrics-port 9464` serves them at `/metrics`; in a process
of your own::

    from saga.telemetry import metrics
    exporter = metrics.serve([saga], port=9464)       # 127.0.0.1 unless bind= says
    saga.run(observers=[exporter.observer])

Counted in the worker process (`StepObserver`): `pgsaga_steps_total{saga,step,outcome}`,
`pgsaga_step_duration_seconds{saga,step}` and `pgsaga_step_claim_delay_seconds{saga}`.
Read from the database at each scrape (`saga.telemetry.gauges`, bounded queries):
`pgsaga_due_backlog{saga,step}`, `pgsaga_oldest_due_age_seconds{saga,step}` and
`pgsaga_live_runners{schema}`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from wsgiref.simple_server import WSGIServer

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as e:  # pragma: no cover - the test hides the package another way
    raise ImportError("saga.telemetry.metrics needs the prometheus extra: "
                      "pip install 'pgsaga[prometheus]'") from e

from ..core import Saga
from ..observe import StepEvent
from .gauges import BACKLOG_CAP, Gauges

logger = logging.getLogger(__name__)

BIND: Final = "127.0.0.1"  # loopback: exposing the endpoint further is a decision
# Steps are often milliseconds, sometimes minutes.
DURATION_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                           2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PrometheusObserver:
    """A `StepObserver` that counts steps, and their durations, into *registry*."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._children: dict[tuple[str, ...], Any] = {}  # labels() once per label set
        self.steps = Counter("pgsaga_steps", "Step attempts, by outcome",
                             ["saga", "step", "outcome"], registry=registry)
        self.duration = Histogram("pgsaga_step_duration_seconds",
                                  "How long step functions ran", ["saga", "step"],
                                  buckets=DURATION_BUCKETS, registry=registry)
        self.claim_delay = Histogram("pgsaga_step_claim_delay_seconds",
                                     "From a row's claim to the start of its step", ["saga"],
                                     buckets=DURATION_BUCKETS, registry=registry)

    def __repr__(self) -> str:
        return "<PrometheusObserver>"

    def step_started(self, event: StepEvent) -> None:
        if event.claim_delay is not None:
            self._child(self.claim_delay, "delay", event.saga).observe(event.claim_delay)

    def step_finished(self, event: StepEvent) -> None:
        self._child(self.steps, "steps", event.saga, event.step, event.outcome or "lost").inc()
        if event.duration is not None:
            self._child(self.duration, "duration", event.saga, event.step).observe(
                event.duration)

    def _child(self, metric: Any, kind: str, *labels: str) -> Any:
        # A dict look-up instead of labels()' checks and lock; a race only makes the
        # same child twice (labels() returns the one it keeps).
        key = (kind, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


class DatabaseCollector(Collector):
    """The gauges read from the database at scrape time (see `saga.telemetry.gauges`)."""

    def __init__(self, gauges: Gauges) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reading = self.gauges.read()
        due = GaugeMetricFamily("pgsaga_due_backlog",
                                f"Due PENDING rows (counted up to {self.gauges.cap})",
                                labels=["saga", "step"])
        age = GaugeMetricFamily("pgsaga_oldest_due_age_seconds",
                                "How long the earliest due row has been due",
                                labels=["saga", "step"])
        for b in reading.backlog:
            due.add_metric([b.saga, b.step], b.due)
            age.add_metric([b.saga, b.step], b.oldest_due_age)
        runners = GaugeMetricFamily("pgsaga_live_runners", "Worker processes whose "
                                    "heartbeat has not expired", labels=["schema"])
        for schema, n in reading.runners.items():
            runners.add_metric([schema], n)
        yield from (due, age, runners)


@dataclass
class Exporter:
    """A running `/metrics` endpoint: its observer (hand it to the runner), its
    registry, and the server (`close()` stops it)."""

    observer: PrometheusObserver
    registry: CollectorRegistry
    gauges: Gauges
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.gauges.close()


def serve(sagas: Sequence[Saga], port: int, *, bind: str = BIND,
          backlog_cap: int = BACKLOG_CAP) -> Exporter:
    """Serve the metrics of *sagas* at `http://{bind}:{port}/metrics` from a thread.

    Port 0 picks a free one (`Exporter.port`). Raise `OSError` if it cannot be bound.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
    registry = CollectorRegistry(auto_describe=False)
    observer = PrometheusObserver(registry)
    gauges = Gauges(sagas, cap=backlog_cap)
    registry.register(DatabaseCollector(gauges))
    server: Any
    server, thread = start_http_server(port, addr=bind, registry=registry)
    thread.name = "saga-metrics"
    logger.info("metrics at http://%s:%d/metrics", bind, server.server_port,
                extra={"action": "metrics_serve"})
    return Exporter(observer, registry, gauges, server, thread)
