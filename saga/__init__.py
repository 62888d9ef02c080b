"""pgsaga: durable, self-healing step chains for synchronous Python on PostgreSQL."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .codecs import Codec, JsonCodec, PickleCodec
from .core import Saga
from .errors import (
    ConcurrencyException,
    DatabaseUnavailable,
    DuplicateSaga,
    SagaError,
    SagaException,
    SagaNotFound,
)
from .execution import RunStats
from .observe import StepEvent, StepObserver
from .records import Instance, Status
from .steps import Continuation, Step

try:
    __version__ = version("pgsaga")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "Codec",
    "ConcurrencyException",
    "Continuation",
    "DatabaseUnavailable",
    "DuplicateSaga",
    "Instance",
    "JsonCodec",
    "PickleCodec",
    "RunStats",
    "Saga",
    "SagaError",
    "SagaException",
    "SagaNotFound",
    "Status",
    "Step",
    "StepEvent",
    "StepObserver",
    "__version__",
]
