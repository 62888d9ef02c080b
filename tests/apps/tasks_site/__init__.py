"""A Django project whose tasks run on saga.contrib.django_tasks, for its tests.

Django can be set up once per process, and tests/test_django.py sets it up with the
example's settings; so the suites here (`suite_*.py`, which the default collection
skips) run in a child pytest process that tests/test_django_tasks.py starts, with
SAGA_TEST_DSN pointing at the parent's server and SAGA_TASKS_* naming the database.
"""
