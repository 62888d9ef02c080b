"""examples/django_app's task (shop/tasks.py): a receipt enqueued by a view in its
transaction, run by `manage.py saga_worker`, read back by a view through the framework.
Run by tests/test_django_tasks.py, in a process of its own (the example's settings)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.apps.tasks_site.conftest import ROOT


@pytest.fixture(scope="module")
def example(dsn: str) -> Iterator[dict[str, str]]:
    """Django set up with the example's settings on a fresh schema; the worker's env."""
    import django

    schema = f"t_{uuid.uuid4().hex[:10]}"
    site_dsn = make_conninfo(dsn, options=f"-c search_path={schema}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    env = {"DJANGO_SETTINGS_MODULE": "examples.django_app.settings", "SAGA_DSN": site_dsn,
           "SAGA_SCHEMA": schema}
    os.environ.update(env)
    try:
        django.setup()
        from django.core.management import call_command
        from django.db import connections
        from django.test.utils import setup_test_environment

        from saga import Saga

        with Saga("migrate", site_dsn, schema=schema) as admin:
            admin.init_db()
        call_command("migrate", "shop", verbosity=0)
        setup_test_environment()
        yield {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        connections.close_all()
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def get(path: str) -> Any:
    from django.test import Client

    return Client().get(path)


def post(path: str) -> Any:
    from django.test import Client

    return Client().post(path)


def test_a_receipt_task_end_to_end(example: dict[str, str]) -> None:
    from examples.django_app.shop.models import Order

    paid = Order.objects.create(customer="ann", item="book", status=Order.PAID)
    unpaid = Order.objects.create(customer="bob", item="pen")
    queued = post(f"/orders/{paid.pk}/receipt/")
    assert queued.status_code == 202, queued.content
    refused = post(f"/orders/{unpaid.pk}/receipt/")
    assert post("/orders/999999/receipt/").status_code == 404
    proc = subprocess.run(
        [sys.executable, "-m", "examples.django_app.manage", "saga_worker", "--drain"],
        cwd=ROOT, env=example, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    shown = get(f"/tasks/{queued.json()['task']}/").json()
    assert shown["status"] == "SUCCESSFUL"
    assert shown["result"] == {"order": paid.pk, "to": "ann", "item": "book"}
    retried = get(f"/tasks/{refused.json()['task']}/").json()
    assert retried["status"] == "READY"  # failed once, waiting for its retry
    assert retried["attempts"] == 1
    assert retried["errors"] == [f"ValueError: order {unpaid.pk} is new, not paid: no receipt yet"]
