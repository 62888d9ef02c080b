"""The exceptions raised by saga, and the one a step raises to fail for good."""

from __future__ import annotations


class SagaException(Exception):
    """Base class of the errors raised by saga."""

    __module__ = "saga"  # tracebacks show saga.X, not saga.errors.X


class DuplicateSaga(SagaException):
    """An instance with this saga name and instance id exists already."""

    __module__ = "saga"


class SagaNotFound(SagaException, LookupError):
    """No such saga instance."""

    __module__ = "saga"


class ConcurrencyException(SagaException):
    """The instance changed under us: it is not in the state the operation needs."""

    __module__ = "saga"


class SagaError(Exception):
    """Raised by a step: fail the instance for good (a verdict, not a transient error)."""

    __module__ = "saga"


class DatabaseUnavailable(SagaException, ConnectionError):
    """No connection to the database within the saga's `connect_timeout`: the server
    cannot be reached (refused, unknown host, wrong password, ...) or every connection
    of the pool stayed busy. Nothing was done; the call may be tried again."""

    __module__ = "saga"
