"""What the worker needs to know about one saga, frozen: its name, schema, steps, codec
and retry policy; and the one backoff every retry in saga uses."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from .codecs import Codec
from .limits import Limit, encoded, runs_on
from .schedules.spec import Schedule
from .steps import Step

MAX_ATTEMPTS: Final = 25
BACKOFF_BASE: Final = 1.0  # seconds before the first retry (before jitter)
BACKOFF_MAX: Final = 3600.0  # the cap of the exponential backoff
JITTER: Final = 0.25  # a wait is shortened by up to this fraction, at random


def backoff(attempt: int, base: float, cap: float,
            rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failure number *attempt* (1, 2, ...): `base * 2**(attempt-1)`,
    capped at *cap*, then shortened by up to `JITTER` of itself so that many waiters do
    not come back in step. *rand* returns a number in [0, 1): tests pin it."""
    delay = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 62))
    return delay * (1.0 - JITTER * rand())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a step may be claimed (`max_attempts` claims in all), and how long a
    failed attempt waits before the next one."""

    max_attempts: int = MAX_ATTEMPTS
    backoff_base: float = BACKOFF_BASE
    backoff_max: float = BACKOFF_MAX

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {attempts!r}")
        if not 0 < self.backoff_base <= self.backoff_max:
            raise ValueError(f"need 0 < backoff_base <= backoff_max, got "
                             f"{self.backoff_base!r} and {self.backoff_max!r}")

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before the attempt after failed attempt *attempt*."""
        return backoff(attempt, self.backoff_base, self.backoff_max, rand)


@dataclass(frozen=True, slots=True)
class SagaSpec:
    """One saga as the worker sees it. `steps` is a read-only copy of the registry at
    the moment the spec was taken (see `Saga.spec()`); `schedules` are its declared
    schedules (saga.schedules), which the worker's tickers make ticks of; `pooler`
    says that its connections keep no session state (saga.pooling)."""

    name: str
    schema: str
    steps: Mapping[str, Step]
    codec: Codec
    policy: RetryPolicy
    schedules: tuple[Schedule, ...] = ()
    limits: tuple[Limit, ...] = ()
    pooler: bool = False  # its DSN leads through a transaction pooler (saga.pooling)
    # The limits as the claim reads them (None: no limit, the plain claim).
    limits_json: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", MappingProxyType(dict(self.steps)))
        object.__setattr__(self, "limits", tuple(self.limits))
        for limit in self.limits:
            unknown = sorted(set(limit.steps or ()) - set(self.steps))
            if unknown:
                raise ValueError(f"{limit.describe()}: saga {self.name!r} has no step "
                                 f"{', '.join(map(repr, unknown))}")
        if self.limits:
            object.__setattr__(self, "limits_json", encoded(self.limits, self.steps))

    def runs_on(self, step: str, following: str) -> bool:
        """True if *following* may run at once on the thread that ran *step*: always
        without limits; with limits, when no limit of *following* needs a new claim."""
        return not self.limits or runs_on(self.limits, step, following)

    def owns(self, step: Step) -> bool:
        """True if *step* is this saga's own registered step (not a namesake elsewhere)."""
        return self.steps.get(step.name) is step
