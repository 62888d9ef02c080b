"""Connection strings, as shown to people: never with their password."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict


def describe(dsn: str) -> str:
    """A DSN without secrets, for messages: `host=db port=5432 dbname=app user=me`."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    shown = [f"{k}={params[k]}" for k in ("host", "port", "dbname", "user") if params.get(k)]
    return " ".join(shown) or "<default connection>"


def check_connection(dsn: str, timeout: int = 5) -> None:
    """Connect once to fail early, with a one-line reason that names the database."""
    try:
        psycopg.connect(dsn, connect_timeout=timeout).close()
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ConnectionError(f"cannot connect to {describe(dsn)}: {reason}") from None
