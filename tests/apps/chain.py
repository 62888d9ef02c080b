"""The "chain" saga: three quick steps, a delayed continuation, a failing step, slow steps.

Every input is a dict with the instance id under "id".
"""

from __future__ import annotations

import os
import time
from typing import Any

from saga import Saga

from . import SCHEMA, record

HOUR = 3600.0


def build(schema: str, dsn: str | None = None) -> Saga:
    """A "chain" saga on *schema*; retries wait a minute, so a drain never sees them due."""
    saga = Saga("chain", dsn, schema=schema, max_attempts=100, backoff_base=60.0)

    def log(input: dict[str, Any], step: str, event: str = "run") -> None:
        record(saga.dsn, schema, input["id"], step, event)

    @saga.step
    def first(input: dict[str, Any]) -> object:
        log(input, "first")
        return second(input)

    @saga.step
    def second(input: dict[str, Any]) -> object:
        log(input, "second")
        return third(input)

    @saga.step
    def third(input: dict[str, Any]) -> object:
        log(input, "third")
        return None

    @saga.step
    def later(input: dict[str, Any]) -> object:
        """Go on with `third` in an hour."""
        log(input, "later")
        return third(input, delay=HOUR)

    @saga.step
    def broken(input: dict[str, Any]) -> object:
        log(input, "broken")
        raise RuntimeError("broken step")

    @saga.step
    def slow(input: dict[str, Any]) -> object:
        """Take input["seconds"]; log its start and its end."""
        log(input, "slow", "start")
        time.sleep(input["seconds"])
        log(input, "slow", "done")
        return None

    @saga.step
    def block_once(input: dict[str, Any]) -> object:
        """Hang for a minute on the first attempt (the one that creates input["marker"])."""
        log(input, "block_once", "start")
        try:
            os.close(os.open(input["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            time.sleep(60)
        log(input, "block_once", "done")
        return None

    return saga


saga = build(SCHEMA)
