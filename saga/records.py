"""What a saga instance looks like from outside: its status and its record."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

MAX_NAME: Final = 128  # characters of a saga's name
MAX_INSTANCE: Final = 512  # characters of an instance id


class Status(enum.IntEnum):
    """The state machine of an instance, stored as a smallint."""

    PENDING = 0  # waiting; runnable once run_after <= now()
    RUNNING = 1  # claimed by a live runner
    COMPLETE = 2  # finished normally
    ERROR = 3  # SagaError, retries exhausted, or an undecodable row
    CANCELLED = 4  # cancel(): the one extension of the original state machine

    @property
    def finished(self) -> bool:
        """True for the end states: COMPLETE, ERROR and CANCELLED."""
        return self >= Status.COMPLETE

    __module__ = "saga"


@dataclass(frozen=True, slots=True)
class Instance:
    """One saga instance as stored, with `input` and `state` decoded."""

    id: int
    name: str
    instance: str
    step: str
    status: Status
    input: object
    state: object
    attempts: int
    error: str | None
    run_after: datetime
    runner_id: str | None
    created_at: datetime
    updated_at: datetime
    cancel_requested: bool = False  # cancel() came while RUNNING: ends at the step boundary
    key: str | None = None  # the concurrency key given to start(key=...)

    __module__ = "saga"

    @classmethod
    def from_row(cls, row: Sequence[Any],
                 decode: Callable[[str, str | None, int], object]) -> Instance:
        """Build a record from a row of the `get_instance` query (in its column order).

        *decode(step, text, which)* turns the JSON text of the input (which 0) or the
        state (which 1) into a value.
        """
        (id_, name, instance_id, step, status, input, state, attempts, error,
         run_after, runner_id, created_at, updated_at, cancel_requested, *rest) = row
        return cls(
            id=id_, name=name, instance=instance_id, step=step, status=Status(status),
            input=decode(step, input, 0), state=decode(step, state, 1),
            attempts=attempts, error=error, run_after=run_after, runner_id=runner_id,
            created_at=created_at, updated_at=updated_at, cancel_requested=cancel_requested,
            key=rest[0] if rest else None,
        )

    @property
    def done(self) -> bool:
        """True once the instance is COMPLETE, ERROR or CANCELLED."""
        return self.status.finished


def check_text(what: str, value: object, limit: int) -> str:
    """Return *value* if it is a usable name or id, else raise naming the argument."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text, got {value[:40]!r}") from None
    if not value or len(value) > limit or "\x00" in value:
        raise ValueError(
            f"{what} must be 1 to {limit} characters without NUL, got {value[:40]!r}"
            + ("..." if len(value) > 40 else "")
        )
    return value
