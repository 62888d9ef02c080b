"""What the command lines share: the parser class (one error prefix), the global options
and their environment defaults, and the argument types of the admin commands."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Final, NoReturn

from ..core import MAX_INSTANCE, MAX_NAME, check_text
from ..records import Status
from ..sqlfiles import check_schema

ERROR_PREFIX: Final = "pgsaga: error:"  # every error either command line prints
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_DURATION: Final = 100 * 365 * 86400.0  # beyond this, timestamps overflow; nobody means it

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors start with `pgsaga: error:`, like the rest."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{ERROR_PREFIX} {message}\n")


def fail(message: str) -> None:
    """Print a runtime error (exit status 1 follows), with the one prefix."""
    print(f"{ERROR_PREFIX} {message}", file=sys.stderr)


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """--dsn and --schema, given before or after the command: neither sets a default here
    (SUPPRESS), so that the one given after the command does not hide the one before."""
    parser.add_argument("--dsn", default=argparse.SUPPRESS,
                        help="the database (default: SAGA_DSN)")
    parser.add_argument("--schema", default=argparse.SUPPRESS, type=schema_name,
                        help="the schema (default: SAGA_SCHEMA, else saga)")


def database_of(args: argparse.Namespace) -> tuple[str | None, str]:
    """The DSN and schema to use: --dsn, else SAGA_DSN; --schema, else SAGA_SCHEMA, else
    "saga". Raise `ValueError` for a SAGA_SCHEMA that is no schema name."""
    dsn = getattr(args, "dsn", None) or os.environ.get("SAGA_DSN") or None
    schema = getattr(args, "schema", None)
    if schema is None:
        schema = os.environ.get("SAGA_SCHEMA") or "saga"
        try:
            check_schema(schema)
        except ValueError as e:
            raise ValueError(f"SAGA_SCHEMA: {e}") from None
    return dsn, schema


def log_level(text: str) -> str:
    """A logging level name in any case: `debug`, `INFO`, ..."""
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise argparse.ArgumentTypeError(
            f"invalid level {text!r} (choose from debug, info, warning, error)")
    return level


def duration(text: str) -> float:
    """Seconds of a duration such as `30s`, `5m`, `2h`, `7d`, `1w` or `1h30m`."""
    spec = text.strip().lower()
    parts = _DURATION_PART.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number and a unit (s, m, h, d, w), "
            "e.g. 30s, 5m, 2h, 7d, 1w or 1h30m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"duration {text!r} is longer than 100 years")
    return seconds


def statuses(text: str) -> list[Status]:
    """Statuses named (case-insensitively) or numbered, separated by commas."""
    found: list[Status] = []
    for item in (part.strip() for part in text.split(",")):
        try:
            status = Status(int(item)) if item.isdigit() else Status[item.upper()]
        except (KeyError, ValueError):
            known = ", ".join(s.name.lower() for s in Status)
            raise argparse.ArgumentTypeError(
                f"unknown status {item!r} (known: {known}, or their numbers "
                f"0-{max(Status)})") from None
        if status not in found:
            found.append(status)
    return found


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    """A positive number of seconds (`2`, `0.5`), or a duration (`5m`)."""
    try:
        value = float(text)
    except ValueError:
        value = duration(text)
    if not value > 0 or value > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def json_value(text: str) -> object:
    """A JSON value (`'{"amount": 10}'`, `42`, `'"text"'`), or `-` to read it from stdin."""
    source = sys.stdin.read() if text == "-" else text
    try:
        return json.loads(source)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e}): {source[:60]!r}") from None


def schema_name(text: str) -> str:
    try:
        return check_schema(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def name_of(what: str, limit: int) -> Callable[[str], str]:
    """An argument type that checks a saga name or instance id as the API does."""
    def check(text: str) -> str:
        try:
            return check_text(what, text, limit)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    check.__name__ = what  # argparse names the type in its messages
    return check


saga_name = name_of("saga name", MAX_NAME)
instance_id = name_of("instance", MAX_INSTANCE)
step_name = name_of("step", MAX_NAME)
