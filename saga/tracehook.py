"""Where the API asks for a span around `start()`, `start_many()` and `call()`.

A leaf, so that `saga.core` never imports a tracing library: `saga.telemetry.otel`
installs a `CallerTracer` here when it is enabled. Without one, `caller_span` hands back
one shared no-op context manager, and the row's trace context stays NULL.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal, Protocol

Operation = Literal["start", "start_many", "call"]

_NO_SPAN: AbstractContextManager[str | None] = nullcontext(None)


class CallerTracer(Protocol):
    """Makes the caller's span of one API operation."""

    def span(self, operation: Operation, saga: str, step: str, instance: str | None,
             count: int) -> AbstractContextManager[str | None]:
        """A context manager around the operation that yields the span's W3C
        `traceparent` to store with the instance (None to store nothing)."""
        ...


_installed: list[CallerTracer | None] = [None]  # one slot, read on every call


def install(tracer: CallerTracer | None) -> None:
    """Make *tracer* the one the API asks (None: stop tracing the API)."""
    _installed[0] = tracer


def installed() -> CallerTracer | None:
    return _installed[0]


def caller_span(operation: Operation, saga: str, step: str, instance: str | None = None,
                count: int = 1) -> AbstractContextManager[str | None]:
    """The span around one API operation (yielding its traceparent), or a no-op."""
    tracer = _installed[0]
    if tracer is None:
        return _NO_SPAN
    return tracer.span(operation, saga, step, instance, count)
