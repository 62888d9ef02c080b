"""`python -m saga COMMAND`: administration. `migrate` creates or upgrades the schema."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import psycopg

from .conninfo import check_connection
from .migrate import migrate
from .sqlfiles import check_schema


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m saga", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cmd = commands.add_parser(
        "migrate", help="create or upgrade the saga schema (idempotent)",
        description="Apply the missing migrations to the schema, under an advisory lock: "
        "safe to run from several processes at once.",
    )
    cmd.add_argument("--dsn", help="the database (default: SAGA_DSN)")
    cmd.add_argument("--schema", default="saga", help="the schema (default: saga)")
    args = parser.parse_args(argv)

    try:
        check_schema(args.schema)
    except ValueError as e:
        cmd.error(str(e))
    dsn = args.dsn or os.environ.get("SAGA_DSN")
    if not dsn:  # like the worker: a startup error, not a usage one
        print("saga migrate: error: no database: pass --dsn or set SAGA_DSN", file=sys.stderr)
        return 1
    try:
        check_connection(dsn)
        with psycopg.connect(dsn) as conn:
            applied = migrate(conn, args.schema)
    except (ConnectionError, psycopg.Error) as e:
        print(f"saga migrate: error: {e}", file=sys.stderr)
        return 1
    for name in applied:
        print(f"applied {name}")
    print(f"schema {args.schema} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
