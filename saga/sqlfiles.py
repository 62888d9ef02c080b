"""Where the SQL files are: inside the installed package, or beside it in a source tree."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from psycopg import sql

_HERE = Path(__file__).resolve().parent

# A schema is a plain lowercase identifier, so that it never needs quoting in psql and
# `{schema}_...` derived names (the NOTIFY channel) stay within Postgres' 63 bytes.
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,47}")


def sql_dir() -> Path:
    """The folder holding `NNN_*.sql` and `queries.sql`."""
    for candidate in (_HERE / "sql", _HERE.parent / "sql"):  # wheel, then source tree
        if (candidate / "queries.sql").is_file():
            return candidate
    raise FileNotFoundError(f"saga's sql/ folder is missing (looked in and beside {_HERE})")


def check_schema(schema: str) -> str:
    """Return *schema* if it is a valid schema name, else raise `ValueError`."""
    if not isinstance(schema, str) or not _SCHEMA.fullmatch(schema):
        raise ValueError(
            f"schema must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 48 "
            f"characters), got {schema!r}"
        )
    return schema


def render(text: str, schema: str) -> str:
    """Fill `{schema}` in *text* with the quoted schema identifier."""
    return sql.SQL(text).format(schema=sql.Identifier(check_schema(schema))).as_string(None)


@functools.cache
def named_queries(file: str = "queries.sql") -> dict[str, str]:
    """The blocks of *file* (in `sql/`) by their `-- name:` (schema placeholders unfilled)."""
    queries: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in (sql_dir() / file).read_text().splitlines():
        if line.startswith("-- name:"):
            if name:
                queries[name] = _strip("\n".join(lines))
            name, lines = line.removeprefix("-- name:").strip(), []
        elif name is not None and not line.lstrip().startswith("--"):
            lines.append(line)
    if name:
        queries[name] = _strip("\n".join(lines))
    return queries


def _strip(text: str) -> str:
    return text.strip().removesuffix(";")


def migrations() -> list[tuple[int, str, str]]:
    """The numbered migration files, in order: (version, file name, text)."""
    found = []
    for path in sorted(sql_dir().glob("[0-9][0-9][0-9]_*.sql")):
        found.append((int(path.name[:3]), path.name, path.read_text()))
    return found
