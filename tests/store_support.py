"""What test_store.py and test_store_runners.py share: a migrated Store, its names, add/claim."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from saga.migrate import migrate
from saga.store import Lease, Store
from tests.helpers import Db

Conn = psycopg.Connection[Any]
NAME = "shop"
STEPS = ["reserve", "charge"]
RUNNER = "host:1:abc"


@pytest.fixture
def store(dsn: str, schema: str) -> Store:
    with psycopg.connect(dsn) as c:
        migrate(c, schema)
    return Store(schema)


@pytest.fixture
def conn(db: Db, store: Store) -> Conn:
    """An autocommit connection (the test's `db`): each store call stands alone, as if committed."""
    return db.conn


def add(conn: Conn, store: Store, instance: str, step: str = "reserve", *,
        input: object = None, state: object = None, delay: float = 0.0) -> None:
    assert store.insert(conn, NAME, instance, step, json.dumps(input),
                        None if state is None else json.dumps(state), delay)


def claim_one(conn: Conn, store: Store, instance: str, runner: str = RUNNER) -> Lease:
    """Claim what is due, which must be *instance* alone, and return its lease."""
    claimed = store.claim(conn, runner, NAME, STEPS, 100)
    assert [c.instance for c in claimed] == [instance]
    return Lease(claimed[0].id, runner, claimed[0].attempt)
