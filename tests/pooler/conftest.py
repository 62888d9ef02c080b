"""The API's tests again, on sagas that reach the session's server through PgBouncer in
transaction pooling (`pooler=True`); the tests' own SQL (`db`) still goes direct."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from saga import Saga
from saga.pgbouncer import PgBouncer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in this folder goes through PgBouncer: mark it `pooler`."""
    for item in items:
        if "/tests/pooler/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.pooler)


@pytest.fixture
def make_saga(bouncer: PgBouncer, schema: str) -> Iterator[Callable[..., Saga]]:
    """Make initialised sagas through PgBouncer, in pooler mode, on the test's schema."""
    made: list[Saga] = []

    def make(name: str = "test", **options: Any) -> Saga:
        options = {"schema": schema, "backoff_base": 0.05, "backoff_max": 0.2,
                   "pooler": True, **options}
        s = Saga(name, bouncer.dsn, **options)
        made.append(s)
        s.init_db()
        return s

    yield make
    for s in made:
        s.close()

