"""The Django app that brings `manage.py saga_worker`."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped, unused-ignore]


class SagaTasksConfig(AppConfig):  # type: ignore[misc]
    """Labelled ``saga_tasks``: ``django_tasks`` is the backport's own label."""

    name = "saga.contrib.django_tasks"
    label = "saga_tasks"
    verbose_name = "pgsaga tasks"
