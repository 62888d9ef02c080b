"""The Django example (examples/django_app) through Django's test client, on the test
Postgres: a start joins the view's transaction, and a worker runs what was committed.

Django can be set up once per process, so this module sets it up once, with the example's
own settings module, on a schema of its own (Django's tables and the saga's alike).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import django
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from saga import Saga, Status
from tests.helpers import Db

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Site:
    """The configured example: its DSN, schema, saga module and plain SQL on its schema."""

    dsn: str
    schema: str
    sagas: ModuleType
    db: Db

    @property
    def saga(self) -> Saga:
        saga: Saga = self.sagas.saga
        return saga

    def drain(self) -> None:
        """Run the saga's worker in this process until nothing is due, then close its pool."""
        self.saga.run(workers=2, drain=True)
        self.saga.close()

    def orders(self) -> dict[int, tuple[str, str]]:
        """The shop_order rows: id -> (customer, status)."""
        return {pk: (customer, status) for pk, customer, status in
                self.db.rows("SELECT id, customer, status FROM {s}.shop_order")}

    def instances(self) -> dict[str, tuple[str, Status]]:
        """The saga instances: instance id -> (step, status)."""
        return {i: (step, Status(status)) for i, step, status in
                self.db.rows("SELECT instance_id, step, status FROM {s}.instance")}


@pytest.fixture(scope="module")
def django_site(dsn: str) -> Iterator[Site]:
    """Django set up with examples.django_app.settings, migrated, on a fresh schema."""
    from django.conf import settings

    if settings.configured:
        pytest.fail("Django was set up before this module: it can be set up once per process")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    # Unqualified names (Django's tables, the steps' UPDATE shop_order) resolve to it.
    site_dsn = make_conninfo(dsn, options=f"-c search_path={schema}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    db = Db(dsn, schema)
    try:
        yield from set_up_django(site_dsn, schema, db)
    finally:
        db.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def set_up_django(site_dsn: str, schema: str, db: Db) -> Iterator[Site]:
    """Set Django up on *site_dsn* with the example's settings; yield the site."""
    from django.conf import settings

    with pytest.MonkeyPatch.context() as env:
        env.setenv("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
        env.setenv("SAGA_DSN", site_dsn)
        env.setenv("SAGA_SCHEMA", schema)
        # A second, non-PostgreSQL database, for the helper to refuse.
        settings.DATABASES["sqlite"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
        django.setup()
        from examples.django_app import sagas
    from django.core.management import call_command
    from django.db import connections
    from django.test.utils import setup_test_environment, teardown_test_environment

    assert sagas.saga.schema == schema, "examples.django_app.sagas was imported before"
    setup_test_environment()  # the test client's host, "testserver", is allowed
    try:
        with Saga("migrate", site_dsn, schema=schema) as admin:
            admin.init_db()  # the saga tables, as `python -m saga migrate` would
        call_command("migrate", "shop", verbosity=0)
        sagas.saga.use_dsn(site_dsn)  # the worker's DSN; the views need none
        yield Site(site_dsn, schema, sagas, db)
    finally:
        sagas.saga.close()
        connections.close_all()
        teardown_test_environment()


@pytest.fixture
def site(django_site: Site) -> Iterator[Site]:
    """The example, emptied after the test."""
    yield django_site
    django_site.db.execute("TRUNCATE {s}.shop_order, {s}.instance")


@pytest.fixture
def client(site: Site) -> Any:
    """Django's test client."""
    from django.test import Client

    return Client()


def test_import_saga_imports_no_django() -> None:
    code = ("import sys, saga, saga.contrib, saga.contrib.django, examples.django_app.sagas; "
            "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)


def test_a_committed_order_has_its_saga_which_a_worker_completes(site: Site, client: Any) -> None:
    response = client.post("/orders/", {"customer": "ann", "item": "book"},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    pk = response.json()["order"]
    assert response.json()["saga"] == f"order-{pk}"
    assert site.orders() == {pk: ("ann", "new")}
    assert site.instances() == {f"order-{pk}": ("reserve", Status.PENDING)}
    assert not site.saga.has_pool  # the views ran on Django's connection only

    # The worker as deployed: a process that imports the sagas module, without Django.
    worker = subprocess.run(
        [sys.executable, "-m", "saga.worker", "examples.django_app.sagas:saga", "--drain",
         "--log-level", "WARNING"],
        cwd=ROOT, env={**os.environ, "SAGA_DSN": site.dsn, "SAGA_SCHEMA": site.schema},
        capture_output=True, text=True, timeout=60, check=False)
    assert worker.returncode == 0, worker.stderr
    assert " 0 completed, 0 failed" in worker.stdout, worker.stdout
    assert site.orders() == {pk: ("ann", "reserved")}
    status = client.get(f"/orders/{pk}/").json()
    assert status == {"order": pk, "status": "reserved", "saga": {
        "status": "PENDING", "step": "payment", "attempts": 0, "error": None, "result": None}}

    paid = client.post(f"/orders/{pk}/payment/", {"status": "paid"},
                       content_type="application/json")
    assert paid.status_code == 204, paid.content
    site.drain()
    assert site.orders() == {pk: ("ann", "paid")}
    assert site.instances() == {f"order-{pk}": ("payment", Status.COMPLETE)}
    assert client.get(f"/orders/{pk}/").json()["saga"]["result"] == {
        "order": pk, "payment": "paid"}

    again = client.post(f"/orders/{pk}/payment/", {"status": "declined"},
                        content_type="application/json")
    assert again.status_code == 409


def test_a_rolled_back_order_leaves_neither_row_nor_saga(site: Site, client: Any) -> None:
    from django.conf import settings

    limit = settings.SHOP_MAX_OPEN_ORDERS
    for _ in range(limit):
        assert client.post("/orders/", {"customer": "bob", "item": "pen"},
                           content_type="application/json").status_code == 201
    refused = client.post("/orders/", {"customer": "bob", "item": "pen"},
                          content_type="application/json")
    assert refused.status_code == 409, refused.content  # after its saga.start: rolled back
    orders = site.orders()
    assert len(orders) == limit
    assert set(site.instances()) == {f"order-{pk}" for pk in orders}
    site.drain()
    assert {status for _, status in site.orders().values()} == {"reserved"}


def test_the_webhook_answers_404_409_and_400(site: Site, client: Any) -> None:
    def pay(pk: int, body: object) -> int:
        response = client.post(f"/orders/{pk}/payment/", body, content_type="application/json")
        code: int = response.status_code
        return code

    assert pay(999_999, {"status": "paid"}) == 404
    pk = client.post("/orders/", {"customer": "cy", "item": "ink"},
                     content_type="application/json").json()["order"]
    assert pay(pk, {"status": "paid"}) == 409  # not reserved yet: the gateway retries
    assert site.instances() == {f"order-{pk}": ("reserve", Status.PENDING)}
    assert pay(pk, {"status": "maybe"}) == 400
    assert pay(pk, {"verdict": "paid"}) == 400
    assert client.post("/orders/", {"item": "ink"},
                       content_type="application/json").status_code == 400
    site.drain()
    assert pay(pk, {"status": "declined"}) == 204
    site.drain()
    assert site.orders() == {pk: ("cy", "cancelled")}
    assert client.get("/orders/999999/").status_code == 404


# -- saga.contrib.django.connection -------------------------------------------------------


def test_connection_is_djangos_own_and_joins_its_transaction(site: Site) -> None:
    from django.db import connections, transaction

    from saga.contrib.django import connection

    with transaction.atomic():
        conn = connection()
        assert conn is connections["default"].connection
        assert not conn.autocommit
        site.saga.start("joined", site.sagas.reserve, site.sagas.OrderRef(1), conn=conn)
        assert site.saga.get("joined", conn=conn).status == Status.PENDING
        assert "joined" not in site.instances()  # not committed yet
    assert site.instances() == {"joined": ("reserve", Status.PENDING)}

    class Failed(Exception):
        pass

    def view_that_fails() -> None:
        with transaction.atomic():
            site.saga.start("undone", site.sagas.reserve, site.sagas.OrderRef(2),
                            conn=connection())
            raise Failed

    with pytest.raises(Failed):
        view_that_fails()
    assert "undone" not in site.instances()


def test_connection_outside_atomic_must_be_asked_for(site: Site) -> None:
    from django.db import transaction
    from django.db.transaction import TransactionManagementError

    from saga.contrib.django import connection

    with pytest.raises(TransactionManagementError, match=r"outside transaction\.atomic"):
        connection()
    conn = connection(atomic=False)
    assert conn.autocommit
    site.saga.start("at-once", site.sagas.reserve, site.sagas.OrderRef(1), conn=conn)
    assert "at-once" in site.instances()  # committed by itself, in autocommit

    transaction.set_autocommit(False)  # a transaction managed by hand is one too
    try:
        site.saga.start("by-hand", site.sagas.reserve, site.sagas.OrderRef(2),
                        conn=connection())
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    assert "by-hand" not in site.instances()

    with transaction.atomic():
        transaction.set_rollback(True)  # as after a caught database error
        with pytest.raises(TransactionManagementError, match="error occurred"):
            connection()


def test_connection_refuses_a_database_that_is_not_postgresql(site: Site) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from saga.contrib.django import connection

    with pytest.raises(ImproperlyConfigured, match=r"'sqlite'.*not PostgreSQL"):
        connection("sqlite", atomic=False)
