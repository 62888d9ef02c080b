"""Formatters for saga's log records, which carry their context as attributes.

Every record about an instance has `saga`, `instance`, `id` (the row id), `step`,
`attempt` and `runner`; the library's own records also say what happened in `action`
(`claim`, `retry`, `error`, `cancelled`, `reap`, `runner_start`, ...). Step loggers log
to `saga.steps`, the library to `saga.*`: a handler on the `saga` logger sees them all,
in one stream. Only the standard library is used.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Final

CONTEXT: Final = ("saga", "instance", "id", "step", "attempt", "runner", "action")


def context(record: logging.LogRecord) -> dict[str, object]:
    """The saga context *record* carries, in `CONTEXT` order."""
    return {key: getattr(record, key) for key in CONTEXT if hasattr(record, key)}


class ContextFormatter(logging.Formatter):
    """Text lines with the instance they are about appended, with the same fields as the
    JSON format: `... [saga=x instance=y id=7 step=z attempt=1]`."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        about = [f"{key}={getattr(record, key)}"
                 for key in ("saga", "instance", "id", "step", "attempt")
                 if hasattr(record, key)]
        return f"{line} [{' '.join(about)}]" if about else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the saga
    context, any other `extra` given to the call, and the traceback as `exc`."""

    # Attributes every LogRecord has: anything else came in through `extra`.
    _STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        entry.update(context(record))
        for key, value in vars(record).items():
            if key not in self._STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)
