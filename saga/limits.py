"""Concurrency and rate limits, as declared next to the steps (`Saga.limit`).

A `Limit` is a value: the worker carries it in the frozen `SagaSpec`, and the claim
(`claim_limited` in `sql/008_limits.sql`) enforces it in the database, across every
worker. Nothing here talks to the database.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

MAX_KEY: Final = 256  # characters of a concurrency key

Kind = Literal["key", "running", "rate"]


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `n` ... of `steps` (None: every step of the saga):

    - `key`: RUNNING instances sharing one concurrency key (n=1: one at a time per key);
    - `running`: RUNNING executions, whatever their key;
    - `rate`: starts (claims) in any window of `per` seconds.
    """

    kind: Kind
    n: int
    steps: tuple[str, ...] | None = None
    per: float = 0.0

    def __post_init__(self) -> None:
        what = {"key": "per_key", "running": "running", "rate": "rate"}.get(self.kind)
        if what is None:
            raise ValueError(f"kind must be 'key', 'running' or 'rate', got {self.kind!r}")
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise ValueError(f"{what} must be an integer >= 1, got {self.n!r}")
        if self.kind == "rate" and not (isinstance(self.per, (int, float))
                                        and math.isfinite(self.per) and self.per > 0):
            raise ValueError(f"per must be a number of seconds > 0, got {self.per!r}")
        if self.steps is not None:
            object.__setattr__(self, "steps", tuple(sorted(set(self.steps))))

    @property
    def id(self) -> str:
        """What names the limit in the database (its locks, its rate log): the same
        declaration in every worker gives the same id; changing `n` keeps it."""
        return f"{self.kind}:{','.join(self.steps) if self.steps is not None else '*'}"

    def covers(self, step: str) -> bool:
        return self.steps is None or step in self.steps

    def describe(self) -> str:
        """How `stats` and errors name it: `per_key=1 on transfer`, `rate=20/1s on *`."""
        on = ",".join(self.steps) if self.steps is not None else "*"
        if self.kind == "rate":
            return f"rate={self.n}/{self.per:g}s on {on}"
        return f"{'per_key' if self.kind == 'key' else 'running'}={self.n} on {on}"


def add(limits: Sequence[Limit], new: Iterable[Limit]) -> tuple[Limit, ...]:
    """*limits* with *new* added; a second limit of one kind on the same steps is an
    error (which of the two would hold?)."""
    out = list(limits)
    for limit in new:
        for old in out:
            if old.id == limit.id:
                raise ValueError(f"{limit.describe()}: there is already {old.describe()}")
        out.append(limit)
    return tuple(out)


def encoded(limits: Sequence[Limit], steps: Iterable[str]) -> str:
    """The limits as `claim_limited` reads them, each with the steps it covers spelt out
    (a whole-saga limit covers *steps*, the saga's steps when the spec was taken)."""
    every = sorted(steps)
    return json.dumps([
        {"id": limit.id, "kind": limit.kind, "n": limit.n, "per": limit.per,
         "steps": list(limit.steps) if limit.steps is not None else every}
        for limit in limits])


def runs_on(limits: Sequence[Limit], step: str, following: str) -> bool:
    """True if going from *step* to *following* on the same thread keeps within the
    limits: every limit on *following* already holds the slot *step* took (it covers
    both), and none is a rate (each start must be counted, by a claim)."""
    return all(limit.covers(step) and limit.kind != "rate"
               for limit in limits if limit.covers(following))


def check_key(key: object, *, required: bool, saga: str) -> str | None:
    """Return a usable concurrency key, or None; raise naming `key` otherwise."""
    if key is None:
        if required:
            raise ValueError(f"saga {saga!r} has a per-key limit: start it with key=...")
        return None
    if not isinstance(key, str):
        raise TypeError(f"key must be a string, got {type(key).__name__}")
    if not key or len(key) > MAX_KEY or "\x00" in key:
        raise ValueError(f"key must be 1 to {MAX_KEY} characters without NUL, "
                         f"got {key[:40]!r}" + ("..." if len(key) > 40 else ""))
    return key
