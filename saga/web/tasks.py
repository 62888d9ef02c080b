"""The instance page's Task section, for an instance that is a Django task
(`saga.contrib.django_tasks`): the call, its queue, its result and the attempt log, read
from the row the way that backend stores it, so that nobody has to dig them out of the
raw input and state.

Recognised by the input's shape alone (``{"task", "args", "kwargs", "run_after"}``):
the dashboard imports nothing of Django, and the saga may have any name (`SAGA_NAME`).
"""

from __future__ import annotations

import json
from typing import Any, Final

from ..records import Status
from .html import Markup, join, render

CALL_SHOWN: Final = 300  # characters of a call's arguments shown in the summary
TASK_KEYS: Final = frozenset({"task", "args", "kwargs", "run_after"})


def task_input(text: str | None) -> dict[str, Any] | None:
    """The stored input of a task, if *text* (an instance's input as JSON) is one."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    if not (isinstance(value, dict) and set(value) == TASK_KEYS
            and isinstance(value["task"], str) and isinstance(value["args"], list)
            and isinstance(value["kwargs"], dict)):
        return None
    return value


def call(payload: dict[str, Any]) -> str:
    """`path(1, 'x', key=2)`: the call as Python would read it, cut when long."""
    args = [json.dumps(a, ensure_ascii=False) for a in payload["args"]]
    args += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in payload["kwargs"].items()]
    shown = ", ".join(args)
    if len(shown) > CALL_SHOWN:
        shown = shown[:CALL_SHOWN] + "…"
    return f"{payload['task']}({shown})"


def section(row: dict[str, Any]) -> Markup:
    """The Task section of *row* (as `WebStore.instance` reads it); empty if no task."""
    payload = task_input(row["input"])
    if payload is None:
        return Markup("")
    try:
        log = json.loads(row["state"]) if row["state"] else {}
    except ValueError:
        log = {}
    log = log if isinstance(log, dict) else {}
    facts: list[tuple[str, object]] = [("call", render("<code>{c}</code>", c=call(payload))),
                                       ("queue", row["step"])]
    if payload["run_after"]:
        facts.append(("run after", payload["run_after"]))
    if row["status"] == Status.COMPLETE and "return_value" in log:
        shown = json.dumps(log["return_value"], indent=2, ensure_ascii=False)
        facts.append(("return value", render('<pre class="json">{v}</pre>', v=shown)))
    workers = log.get("worker_ids")
    if isinstance(workers, list) and workers:
        facts.append(("attempts by", ", ".join(str(w) for w in workers)))
    raw = log.get("errors")
    errors = [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []
    attempts = join(
        render('<details><summary>attempt error {n}: {kind}</summary>'
               '<pre class="error">{tb}</pre></details>', n=i + 1,
               kind=e.get("exception_class_path", "?"), tb=e.get("traceback", ""))
        for i, e in enumerate(errors))
    listed = join(render("<dt>{k}</dt><dd>{v}</dd>", k=k, v=v) for k, v in facts)
    return render('<section><h2>Task</h2><dl class="facts">{facts}</dl>{attempts}</section>',
                  facts=listed, attempts=attempts)
