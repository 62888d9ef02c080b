"""What a saga instance looks like from outside: its status and its record."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


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

    __module__ = "saga"

    @property
    def done(self) -> bool:
        """True once the instance is COMPLETE, ERROR or CANCELLED."""
        return self.status.finished
