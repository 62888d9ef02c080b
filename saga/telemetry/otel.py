"""OpenTelemetry traces and metrics (the `pgsaga[otel]` extra: `opentelemetry-api`).

`instrument()` makes `start()`, `start_many()` and `call()` open a span in the caller
and store its W3C `traceparent` with the instance (migration 007), and returns the
`StepObserver` that gives each step a span in the worker, and counts it::

    from saga.telemetry import otel
    observer = otel.instrument()             # the global providers, or pass your own
    saga.run(observers=[observer])           # or: python -m saga.worker ... --otel

Only the API is used: which SDK, exporter and sampler is the application's choice.

Where a step's span goes. The spans of an instance's steps are children of its start
span, so that one trace shows the whole saga: the web request, each step on whichever
worker ran it, a `call()` (linked from the step it set) hours later. A saga that loops
for ever (poll, wait, poll again) would make that trace unbounded; so only the first
`TRACE_CLAIMS` claims of an instance, and the first `TRACE_HOPS` steps of each claim
(a claimed step and the undelayed continuations after it), are children. A step past
those is the root of a trace of its own with a link to the start span: still one click
from the saga's trace, without growing it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from importlib.metadata import version
from typing import Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import (
        Link,
        NonRecordingSpan,
        SpanContext,
        SpanKind,
        StatusCode,
        TraceFlags,
    )
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as e:  # pragma: no cover - the test hides the package another way
    raise ImportError("saga.telemetry.otel needs the otel extra: "
                      "pip install 'pgsaga[otel]'") from e

from .. import tracehook
from ..core import Saga
from ..observe import StepEvent
from .context import parse
from .gauges import Gauges, Reading

TRACE_CLAIMS: Final = 50  # claims of one instance whose steps join the start's trace
TRACE_HOPS: Final = 50  # steps of one claim that do (the claimed one and continuations)

_PROPAGATOR = TraceContextTextMapPropagator()
_FAILED = frozenset({"retry", "error"})
_SCOPE = "saga"


def _version() -> str:
    return version("pgsaga")


def span_context(traceparent: str | None) -> SpanContext | None:
    """The (remote) span context a stored `traceparent` names, or None."""
    return _span_context(traceparent) if traceparent else None


@functools.lru_cache(maxsize=1024)  # the steps of one instance share their start's
def _span_context(traceparent: str) -> SpanContext | None:
    # The stored text was checked by saga.telemetry.context (well-formed, valid ids):
    # cheaper to split than to go through the propagator for every step.
    try:
        _, trace_id, span_id, flags = traceparent.split("-")
        context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                              trace_flags=TraceFlags(int(flags, 16)))
    except ValueError:
        return None
    return context if context.is_valid else None


def traceparent_of(span: trace.Span) -> str | None:
    """The W3C `traceparent` of *span* (None for an invalid, i.e. no-op, span)."""
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


class ApiTracer:
    """The caller's spans: one PRODUCER span per `start`, `start_many` or `call`."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer(_SCOPE, _version(), tracer_provider=tracer_provider)

    def span(self, operation: tracehook.Operation, saga: str, step: str,
             instance: str | None, count: int) -> AbstractContextManager[str | None]:
        return self._span(operation, saga, step, instance, count)

    @contextmanager
    def _span(self, operation: str, saga: str, step: str, instance: str | None,
              count: int) -> Iterator[str | None]:
        attributes: dict[str, str | int] = {"saga.name": saga, "saga.step": step,
                                            "saga.operation": operation}
        if instance is not None:
            attributes["saga.instance"] = instance
        if operation == "start_many":
            attributes["saga.count"] = count
        # Exceptions (DuplicateSaga, a TypeError) are recorded and set the status.
        with self._tracer.start_as_current_span(f"saga {operation} {saga}",
                                                kind=SpanKind.PRODUCER,
                                                attributes=attributes) as span:
            yield traceparent_of(span)


class OtelObserver:
    """A `StepObserver`: a CONSUMER span per step attempt, and the step metrics.

    The span is the current span while the step runs, so spans the step makes (an HTTP
    client's, a database driver's) are its children. Metrics: `pgsaga.steps` (a counter
    by saga, step and outcome), `pgsaga.step.duration` (a histogram by saga, step and
    outcome, seconds) and `pgsaga.step.claim_delay` (a histogram by saga); with
    *gauges*, the observable gauges `pgsaga.due_backlog`, `pgsaga.oldest_due_age` and
    `pgsaga.live_runners`, read when the SDK collects.

    The step counter is counted here, in a dict, and read by the SDK when it collects
    (an observable counter): a measurement through the SDK costs tens of microseconds,
    and a step already makes one (its duration).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None, *,
                 gauges: Gauges | None = None, trace_claims: int = TRACE_CLAIMS,
                 trace_hops: int = TRACE_HOPS) -> None:
        for name, value in (("trace_claims", trace_claims), ("trace_hops", trace_hops)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.trace_claims, self.trace_hops = trace_claims, trace_hops
        self._tracer = trace.get_tracer(_SCOPE, _version(), tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, _version(), meter_provider=meter_provider)
        self._counts: dict[tuple[str, str, str], int] = {}
        self._counts_lock = threading.Lock()
        meter.create_observable_counter(
            "pgsaga.steps", [self._observe_steps], unit="{step}",
            description="Step attempts, by outcome")
        self._duration = meter.create_histogram(
            "pgsaga.step.duration", unit="s", description="How long step functions ran")
        self._claim_delay = meter.create_histogram(
            "pgsaga.step.claim_delay", unit="s",
            description="From a row's claim to the start of its step")
        self._gauges = gauges
        self._reading: tuple[float, Reading] | None = None
        if gauges is not None:
            meter.create_observable_gauge("pgsaga.due_backlog", [self._observe_due],
                                          unit="{instance}", description="Due PENDING rows")
            meter.create_observable_gauge("pgsaga.oldest_due_age", [self._observe_age],
                                          unit="s", description="Age of the oldest due row")
            meter.create_observable_gauge("pgsaga.live_runners", [self._observe_runners],
                                          unit="{runner}", description="Live worker processes")
        self._local = threading.local()  # the span of the step this thread runs

    def __repr__(self) -> str:
        return f"<OtelObserver trace_claims={self.trace_claims} trace_hops={self.trace_hops}>"

    def close(self) -> None:
        """Close the gauges' database connections (the instruments stay registered)."""
        if self._gauges is not None:
            self._gauges.close()

    # -- spans --------------------------------------------------------------------------

    def step_started(self, event: StepEvent) -> None:
        span = self._start_span(event)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._local.current = (span, token)

    def step_finished(self, event: StepEvent) -> None:
        current = getattr(self._local, "current", None)
        self._local.current = None
        if current is None:  # finished without a start: an attempt abandoned at its claim
            span, token = self._start_span(event), None
        else:
            span, token = current
        try:
            outcome = event.outcome or "lost"
            span.set_attribute("saga.outcome", outcome)
            if event.exception is not None:
                span.record_exception(event.exception)
            if outcome in _FAILED:
                span.set_status(StatusCode.ERROR, _last_line(event.error or outcome))
        finally:
            if token is not None:
                otel_context.detach(token)
            span.end()
        self._count(event)

    def _start_span(self, event: StepEvent) -> trace.Span:
        stored = parse(event.trace)
        start = span_context(stored.start) if stored else None
        links = []
        if start is not None and stored is not None and (
                stored.claims <= self.trace_claims and event.hop < self.trace_hops):
            parent = trace.set_span_in_context(NonRecordingSpan(start))
        else:
            # A root span: an empty context, whatever may be current on this thread.
            parent = otel_context.Context()
            if start is not None:
                links.append(Link(start, {"saga.link": "start"}))
        call = span_context(stored.call) if stored and event.hop == 0 else None
        if call is not None:
            links.append(Link(call, {"saga.link": "call"}))
        attributes: dict[str, str | int | float] = {
            "saga.name": event.saga, "saga.instance": event.instance,
            "saga.step": event.step, "saga.attempt": event.attempt}
        if event.claim_delay is not None:
            attributes["saga.claim_delay"] = event.claim_delay
        return self._tracer.start_span(f"saga step {event.saga}.{event.step}", parent,
                                       kind=SpanKind.CONSUMER, attributes=attributes,
                                       links=links)

    # -- metrics ------------------------------------------------------------------------

    def _count(self, event: StepEvent) -> None:
        key = (event.saga, event.step, event.outcome or "lost")
        with self._counts_lock:
            self._counts[key] = self._counts.get(key, 0) + 1
        if event.duration is not None:
            self._duration.record(event.duration, {"saga": key[0], "step": key[1],
                                                   "outcome": key[2]})
        if event.claim_delay is not None:
            self._claim_delay.record(event.claim_delay, {"saga": event.saga})

    def _observe_steps(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._counts_lock:
            counts = list(self._counts.items())
        return [Observation(n, {"saga": saga, "step": step, "outcome": outcome})
                for (saga, step, outcome), n in counts]

    def _read(self) -> Reading:
        # The SDK calls the three callbacks one after the other: one reading for the three.
        now = time.monotonic()
        if self._reading is None or now - self._reading[0] > 1.0:
            assert self._gauges is not None
            self._reading = (now, self._gauges.read())
        return self._reading[1]

    def _observe_due(self, options: CallbackOptions) -> Iterator[Observation]:
        for b in self._read().backlog:
            yield Observation(b.due, {"saga": b.saga, "step": b.step})

    def _observe_age(self, options: CallbackOptions) -> Iterator[Observation]:
        for b in self._read().backlog:
            yield Observation(b.oldest_due_age, {"saga": b.saga, "step": b.step})

    def _observe_runners(self, options: CallbackOptions) -> Iterator[Observation]:
        for schema, n in self._read().runners.items():
            yield Observation(n, {"schema": schema})


def instrument(tracer_provider: trace.TracerProvider | None = None,
               meter_provider: metrics.MeterProvider | None = None, *,
               sagas: Sequence[Saga] = (), trace_claims: int = TRACE_CLAIMS,
               trace_hops: int = TRACE_HOPS) -> OtelObserver:
    """Trace the API of every saga in this process, and return the worker's observer.

    The providers default to OpenTelemetry's global ones. With *sagas*, the observer
    also reports their backlog and live runners as observable gauges.
    """
    tracehook.install(ApiTracer(tracer_provider))
    return OtelObserver(tracer_provider, meter_provider,
                        gauges=Gauges(sagas) if sagas else None,
                        trace_claims=trace_claims, trace_hops=trace_hops)


def uninstrument() -> None:
    """Stop tracing the API (observers already handed to a runner keep working)."""
    tracehook.install(None)


def _last_line(error: str) -> str:
    return next((line for line in reversed(error.splitlines()) if line.strip()), error)
