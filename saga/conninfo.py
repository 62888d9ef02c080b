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


def check_dsn(dsn: str, what: str = "dsn") -> str:
    """Return *dsn* if libpq can parse it, else raise `ValueError` without echoing it
    (libpq quotes the whole string in its complaint, password included)."""
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ValueError(f"{what} is not a valid connection string") from None
    return dsn


def check_connection(dsn: str, timeout: int = 5) -> None:
    """Connect once to fail early, with a one-line reason that names the database.

    Raise `ConnectionError`; its message never holds the DSN's password.
    """
    try:
        params = conninfo_to_dict(check_dsn(dsn, "the DSN"))
    except ValueError as e:
        raise ConnectionError(str(e)) from None
    try:
        psycopg.connect(dsn, connect_timeout=timeout).close()
    except psycopg.Error as e:
        # libpq's first line says what failed ("... failed: Connection refused").
        text = str(e).strip().removeprefix("connection failed: ")
        reason = text.splitlines()[0] if text else type(e).__name__
        secret = str(params.get("password") or "")
        reason = reason.replace(dsn, describe(dsn))
        if secret:
            reason = reason.replace(secret, "***")
        raise ConnectionError(f"cannot connect to {describe(dsn)}: {reason}") from None
