"""The "other" saga: one step. Run next to "chain" in one worker process."""

from __future__ import annotations

from typing import Any

from saga import Saga

from . import SCHEMA, record


def build(schema: str, dsn: str | None = None) -> Saga:
    saga = Saga("other", dsn, schema=schema)

    @saga.step
    def only(input: dict[str, Any]) -> object:
        record(saga.dsn, schema, input["id"], "only")
        return None

    return saga


saga = build(SCHEMA)
