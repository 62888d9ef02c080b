"""Settings of the example project. The database is SAGA_DSN, the worker's too: the saga
tables must be in the database of the views' transactions for a start to join them."""

import os
from typing import Any

from psycopg.conninfo import conninfo_to_dict


def database(dsn: str) -> dict[str, Any]:
    """A `DATABASES` entry for a libpq DSN (`postgresql://...` or `host=... dbname=...`)."""
    params: dict[str, Any] = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3: what saga.contrib needs
        "NAME": params.pop("dbname", None) or params.get("user") or "postgres",
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
        "OPTIONS": params,  # the rest as is: sslmode, options (e.g. a search_path), ...
    }


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "not-secret: set DJANGO_SECRET_KEY")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = ["examples.django_app.shop", "saga.contrib.django_tasks"]
MIDDLEWARE: list[str] = []  # a JSON API without sessions or CSRF cookies
ROOT_URLCONF = "examples.django_app.urls"

DATABASES = {"default": database(os.environ.get("SAGA_DSN", ""))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

SHOP_MAX_OPEN_ORDERS = 3  # per customer: one more is refused, after its saga has started

# Django's tasks framework on pgsaga (shop/tasks.py): tasks are rows of the saga tables,
# enqueued on the `default` connection, so in a view's transaction.
TASKS = {
    "default": {
        "BACKEND": "saga.contrib.django_tasks.Backend",
        "OPTIONS": {"SCHEMA": os.environ.get("SAGA_SCHEMA", "saga"), "MAX_ATTEMPTS": 5},
    }
}
