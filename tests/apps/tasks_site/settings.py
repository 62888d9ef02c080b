"""Settings of the tasks test project: the database and schema come from the environment."""

import os

from examples.django_app.settings import database

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = ["saga.contrib.django_tasks", "tests.apps.tasks_site"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.apps.tasks_site.urls"
DATABASES = {"default": database(os.environ.get("SAGA_TASKS_DSN", ""))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

_OPTIONS = {
    "SCHEMA": os.environ.get("SAGA_TASKS_SCHEMA", "saga"),
    "MAX_ATTEMPTS": 3,
    "BACKOFF_BASE": 0.05,  # retries within the test's patience
    "BACKOFF_MAX": 0.2,
}
TASKS = {
    "default": {
        "BACKEND": "saga.contrib.django_tasks.Backend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": _OPTIONS,
    },
    # Own pool on a DSN: an enqueue commits at once, whatever the caller's transaction does.
    "own_pool": {
        "BACKEND": "saga.contrib.django_tasks.Backend",
        "QUEUES": [],  # any queue name: a worker must name the queues it serves
        "OPTIONS": {**_OPTIONS, "DSN": os.environ.get("SAGA_TASKS_DSN", "")},
    },
}
