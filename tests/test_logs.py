"""Log records carry the saga context; the JSON formatter; one stream on the `saga` logger."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from saga import Saga
from saga.logs import CONTEXT, ContextFormatter, JsonFormatter, context
from tests.apps.chain import build
from tests.test_worker import CHAIN, run_worker


@pytest.fixture
def stream() -> Iterator[list[logging.LogRecord]]:
    """Every record that reaches the `saga` logger: the library's and the steps'."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler, root = Collect(level=logging.DEBUG), logging.getLogger("saga")
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)  # (setLevel, not .level =: it clears the loggers' caches)
    yield records
    root.removeHandler(handler)
    root.setLevel(level)


def test_step_and_library_records_carry_the_context_in_one_stream(
    saga: Saga, stream: list[logging.LogRecord]
) -> None:
    @saga.step
    def work(input: int, state: object, set_state: object, logger: logging.Logger) -> None:
        logger.info("working on %d", input, extra={"order": 7})
        if input == 1:
            raise RuntimeError("once")

    saga.start("a", work, 1)
    saga.run(workers=1, drain=True)
    row = saga.get("a")

    [step_record] = [r for r in stream if r.name == "saga.steps"]
    assert step_record.getMessage() == "working on 1"
    assert context(step_record) == {"saga": saga.name, "instance": "a", "id": row.id,
                                    "step": "work", "attempt": 1,
                                    "runner": step_record.runner}  # type: ignore[attr-defined]
    assert step_record.runner
    assert step_record.order == 7
    [retry] = [r for r in stream if getattr(r, "action", None) == "retry"]
    assert (retry.name, retry.levelno) == ("saga.execution", logging.WARNING)
    assert set(context(retry)) == set(CONTEXT)
    assert {"runner_start", "claim", "runner_stop"} <= {getattr(r, "action", None)
                                                         for r in stream}


def record(**extra: Any) -> logging.LogRecord:
    r = logging.LogRecord("saga.steps", logging.ERROR, __file__, 1, "paid %s", ("10€",), None)
    r.__dict__.update(extra)
    return r


def test_json_formatter_writes_one_object_per_record() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        r = record(saga="s", instance="i", id=3, step="pay", attempt=2, runner="h:1:ab",
                   order={"n": 1})
        r.exc_info = sys.exc_info()
    line = JsonFormatter().format(r)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "paid 10€"
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "saga.steps"
    assert entry["time"].endswith("+00:00")
    assert {k: entry[k] for k in ("saga", "instance", "id", "step", "attempt", "runner")} == {
        "saga": "s", "instance": "i", "id": 3, "step": "pay", "attempt": 2, "runner": "h:1:ab"}
    assert entry["order"] == {"n": 1}  # other extras too
    assert entry["exc"].startswith("Traceback")
    assert "ValueError: boom" in entry["exc"]
    assert "args" not in entry
    assert "msg" not in entry


def test_context_formatter_appends_the_instance() -> None:
    text = ContextFormatter("%(message)s").format(record(saga="s", instance="i", step="pay"))
    assert text == "paid 10€ [saga=s instance=i step=pay]"
    assert ContextFormatter("%(message)s").format(record()) == "paid 10€"


def test_worker_writes_json_lines(dsn: str, schema: str) -> None:
    with build(schema, dsn) as chain:
        chain.init_db()
        chain.start("x", "broken", {"id": "x"})
    result = run_worker(CHAIN, "--drain", "--log-format", "json", "--log-level", "DEBUG",
                        dsn=dsn, schema=schema)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in io.StringIO(result.stderr)]
    actions = {e.get("action") for e in entries}
    assert {"runner_start", "claim", "retry", "runner_stop"} <= actions
    [retry] = [e for e in entries if e.get("action") == "retry"]
    assert (retry["saga"], retry["instance"], retry["step"]) == ("chain", "x", "broken")
