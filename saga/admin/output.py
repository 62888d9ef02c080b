"""How the admin CLI prints: aligned tables and key/value records for people, JSON for
scripts. Times are shown in UTC, so that operators in several time zones compare
the same numbers.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Final, TextIO

from ..records import Status

ERROR_WIDTH: Final = 60  # characters of an error shown in a table
MISSING: Final = "-"  # a NULL in a table


def status_name(code: int) -> str:
    """The lowercase name of a status code, or the number if this version does not know it."""
    try:
        return Status(code).name.lower()
    except ValueError:
        return str(code)


def one_line(error: str | None, width: int = ERROR_WIDTH) -> str | None:
    """The gist of an error for a table: its last non-empty line (a traceback's
    exception), cut to *width* characters."""
    if not error:
        return error
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    text = lines[-1] if lines else error.strip()
    return text if len(text) <= width else text[: width - 3] + "..."


def utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc) if value.tzinfo is not None else value


def when(value: datetime | None) -> str:
    """A timestamp for a table: `2025-01-31 12:00:05Z` (to the second, UTC)."""
    if value is None:
        return MISSING
    return utc(value).strftime("%Y-%m-%d %H:%M:%SZ")


def age(seconds: float | None) -> str:
    """A duration for people: `850ms`, `42s`, `3m12s`, `2h05m`, `3d04h`."""
    if seconds is None:
        return MISSING
    if seconds < 0:
        return "-" + age(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def printable(text: str) -> str:
    """*text* with control characters escaped (`\\x1b`), so that an instance id or an
    error message written by an application cannot drive the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def cell(value: object) -> str:
    """A value as a table shows it."""
    if value is None:
        return MISSING
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    return printable(str(value).replace("\n", " "))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned text table: a header line, then one line per row; numbers to the right."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [_numeric([r[i] for r in rows if r[i] is not None]) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w)
                 for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def _numeric(values: Sequence[object]) -> bool:
    """True if a column of these (non-NULL) values holds numbers only: right-aligned.
    A column without any value is not (all() of nothing is true: it was, once)."""
    return bool(values) and all(isinstance(v, int | float | Decimal) and not isinstance(v, bool)
                                for v in values)


def record(fields: Sequence[tuple[str, str]]) -> str:
    """Key/value lines with the values aligned; a multi-line value is indented under its
    first line."""
    width = max((len(k) for k, _ in fields), default=0)
    out = []
    for key, value in fields:
        first, *rest = [printable(line) for line in value.splitlines()] or [""]
        out.append(f"{key.ljust(width)}  {first}".rstrip())
        out.extend(f"{'':{width}}  {line}".rstrip() for line in rest)
    return "\n".join(out)


def pretty_json(value: object) -> str:
    """A JSON value (input, state, serves) as people read it: indented when nested."""
    if isinstance(value, dict | list) and value:
        return json.dumps(value, indent=2, ensure_ascii=False, default=_default)
    return json.dumps(value, ensure_ascii=False, default=_default)


def to_json(value: object, indent: int | None = 2) -> str:
    """The whole output of a command in `--json` mode: one JSON document."""
    return json.dumps(value, indent=indent, ensure_ascii=False, default=_default)


def jsonable_instance(row: Mapping[str, Any]) -> dict[str, Any]:
    """An instance row for `--json`: the saga's name as `saga`, the instance id as
    `instance`, the status by name (its code as `status_code`)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "name":
            out["saga"] = value
        elif key == "instance_id":
            out["instance"] = value
        elif key == "status":
            out["status"] = status_name(value)
            out["status_code"] = value
        else:
            out[key] = value
    return out


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return utc(value).isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


def note(text: str) -> None:
    """A remark beside the output (a truncated list): on stderr, so that stdout stays the
    table or JSON a script reads."""
    print(text, file=sys.stderr, flush=True)


class Progress:
    """One line of progress for a long command, redrawn in place on a terminal (at most
    a few times a second); nothing at all when stderr is piped or redirected."""

    def __init__(self, stream: TextIO | None = None, every: float = 0.2) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.every = every
        self._shown = 0.0
        self._width = 0

    def __repr__(self) -> str:
        return f"<Progress enabled={self.enabled}>"

    def update(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._shown < self.every):
            return
        self._shown = now
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def done(self) -> None:
        """Erase the line, before the command prints its result."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
