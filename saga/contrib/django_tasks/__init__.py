"""A backend for Django's tasks framework (`django.tasks`, or the `django-tasks` backport):
`@task` functions stored as one-step saga instances and run by pgsaga's worker.

    TASKS = {"default": {"BACKEND": "saga.contrib.django_tasks.Backend"}}
    INSTALLED_APPS = [..., "saga.contrib.django_tasks"]     # for `manage.py saga_worker`

Importing this package imports Django and the framework; `import saga` does neither.
"""

from __future__ import annotations

from .backend import Backend

__all__ = ["Backend"]
