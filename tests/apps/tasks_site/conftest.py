"""Django set up once for the child process, on a schema of its own (see __init__.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.helpers import Db

ROOT = Path(__file__).resolve().parents[3]


class LazyTasks:
    """`tests.apps.tasks_site.tasks`, imported on first use: after the `site` fixture has
    set Django up (its model cannot be imported before), not when the suite is collected."""

    def __getattr__(self, name: str) -> Any:
        from tests.apps.tasks_site import tasks

        return getattr(tasks, name)


@dataclass
class Site:
    """The configured project: its DSN (search_path on its schema), schema, SQL on it."""

    dsn: str
    schema: str
    db: Db

    def env(self) -> dict[str, str]:
        """The environment of a worker process for this site."""
        return {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.apps.tasks_site.settings",
                "SAGA_TASKS_DSN": self.dsn, "SAGA_TASKS_SCHEMA": self.schema,
                "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="session")
def site(dsn: str) -> Iterator[Site]:
    """Django set up with tests.apps.tasks_site.settings, its tables and the saga's."""
    import django
    from django.conf import settings

    if settings.configured:
        pytest.fail("Django was set up before: these suites run in a process of their own")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    site_dsn = make_conninfo(dsn, options=f"-c search_path={schema}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    db = Db(dsn, schema)
    os.environ.update(DJANGO_SETTINGS_MODULE="tests.apps.tasks_site.settings",
                      SAGA_TASKS_DSN=site_dsn, SAGA_TASKS_SCHEMA=schema)
    try:
        django.setup()
        from django.core.management import call_command
        from django.db import connections
        from django.test.utils import setup_test_environment

        from saga import Saga

        with Saga("migrate", site_dsn, schema=schema) as admin:
            admin.init_db()
        call_command("migrate", run_syncdb=True, verbosity=0)
        setup_test_environment()
        yield Site(site_dsn, schema, db)
        connections.close_all()
    finally:
        db.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def clean(site: Site) -> Iterator[Site]:
    """The site, emptied after the test."""
    yield site
    site.db.execute("TRUNCATE {s}.instance, {s}.tasks_site_note")
