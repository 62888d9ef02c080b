"""The "ticking" saga: one step, and a schedule every second that makes all missed
ticks (so that every tick in a window must exist) for the schedule tests' workers.

`SAGA_TEST_EVERY` sets the interval in seconds (default 1).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from saga import Saga

from . import SCHEMA


def build(schema: str, dsn: str | None = None, every: float = 1.0) -> Saga:
    """A "ticking" saga on *schema*, with the schedule "beat" every *every* seconds."""
    saga = Saga("ticking", dsn, schema=schema)

    @saga.step
    def beat(input: str) -> str:
        return input

    saga.schedule("beat", beat, every=timedelta(seconds=every), catch_up="all",
                  catch_up_limit=1000, input=datetime.isoformat)
    return saga


saga = build(SCHEMA, every=float(os.environ.get("SAGA_TEST_EVERY", "1")))
