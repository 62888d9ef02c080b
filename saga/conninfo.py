"""Connection strings, as shown to people: never with their password."""

from __future__ import annotations

import math

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import DatabaseUnavailable

MIN_CONNECT_TIMEOUT = 2  # libpq's (and psycopg's) floor for connect_timeout, in seconds


def describe(dsn: str) -> str:
    """A DSN without secrets, for messages: `host=db port=5432 dbname=app user=me`."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    shown = [f"{k}={params[k]}" for k in ("host", "port", "dbname", "user") if params.get(k)]
    return " ".join(shown) or "<default connection>"


def check_dsn(dsn: str, what: str = "dsn") -> str:
    """Return *dsn* if libpq can use it, else raise `ValueError` without echoing it
    (libpq quotes the whole string in its complaint, password included).

    Besides the syntax, the port is checked: libpq parses `host:notaport` and only
    refuses it when connecting, which would make the mistake look like an outage.
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ValueError(f"{what} is not a valid connection string") from None
    for port in str(params.get("port") or "").split(","):  # one per host, or empty
        if port.strip() and not (port.strip().isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{what} has an invalid port {port.strip()!r}: expected a "
                             "number from 1 to 65535")
    return dsn


def check_connection(dsn: str, timeout: float = 5) -> None:
    """Connect once to fail early, with a one-line reason that names the database.

    Wait at most *timeout* seconds (libpq rounds it up to whole seconds, at least 2).
    Raise `DatabaseUnavailable` (a `ConnectionError`); its message never holds the
    DSN's password.
    """
    try:
        params = conninfo_to_dict(check_dsn(dsn, "the DSN"))
    except ValueError as e:
        raise DatabaseUnavailable(str(e)) from None
    seconds = max(MIN_CONNECT_TIMEOUT, math.ceil(timeout))
    try:
        psycopg.connect(dsn, connect_timeout=seconds).close()
    except psycopg.Error as e:
        # libpq's first line says what failed ("... failed: Connection refused").
        text = str(e).strip().removeprefix("connection failed: ")
        reason = text.splitlines()[0] if text else type(e).__name__
        secret = str(params.get("password") or "")
        reason = reason.replace(dsn, describe(dsn))
        if secret:
            reason = reason.replace(secret, "***")
        raise DatabaseUnavailable(f"cannot connect to {describe(dsn)}: {reason}") from None
