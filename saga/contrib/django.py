"""Django's own psycopg connection, for `start`/`call`/`get` in a view's transaction.

    from django.db import transaction
    from saga.contrib.django import connection

    with transaction.atomic():
        order = Order.objects.create(...)
        saga.start(f"order-{order.pk}", reserve, ..., conn=connection())

The saga then exists only if the `atomic` block commits: the row and the saga together,
or neither. Django is imported when `connection()` is first called, never by
`import saga`. It needs the `django.db.backends.postgresql` backend on psycopg 3
(Django >= 4.2) and the saga's tables in the same database.
"""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["connection"]


def connection(using: str = "default", *, atomic: bool = True) -> psycopg.Connection[Any]:
    """Return the psycopg 3 connection under Django's connection *using* (an alias of
    `DATABASES`), for the `conn=` argument of the saga's API.

    With *atomic* (the default), it must be called inside `transaction.atomic()` (or a
    view under `ATOMIC_REQUESTS`, or with autocommit turned off): what is passed then
    commits or rolls back with the view's own writes. In autocommit it raises
    `TransactionManagementError`, because there each of the saga's statements would
    commit at once, on its own: the transactional start the caller meant to get would
    silently not be one. Pass ``atomic=False`` to take the connection as it is, e.g. for a
    `get()` in a status view, or to keep a web process from ever opening the saga's
    own pool.

    Raise `ImproperlyConfigured` if *using* is not a PostgreSQL database on psycopg 3,
    and `TransactionManagementError` inside an `atomic` block that is already marked
    for rollback (after a caught database error), as Django's own queries would.
    Use the connection only while the `atomic` block (or the request) lasts: it is
    Django's, which may close or replace it between requests. Django's loaders apply to
    what is read through it: with `USE_TZ = False`, the datetimes of a `get()` are naive.
    """
    # Django ships no type hints (django-stubs may or may not be installed).
    from django.core.exceptions import (  # type: ignore[import-untyped, unused-ignore]
        ImproperlyConfigured,
    )
    from django.db import connections  # type: ignore[import-untyped, unused-ignore]
    from django.db.transaction import (  # type: ignore[import-untyped, unused-ignore]
        TransactionManagementError,
    )

    wrapper = connections[using]
    if wrapper.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"database {using!r} uses {wrapper.settings_dict['ENGINE']!r}, not PostgreSQL: "
            "saga needs django.db.backends.postgresql on psycopg 3"
        )
    wrapper.validate_no_broken_transaction()
    wrapper.ensure_connection()
    raw = wrapper.connection
    if not isinstance(raw, psycopg.Connection):
        raise ImproperlyConfigured(
            f"database {using!r} runs on {type(raw).__module__}.{type(raw).__name__}, "
            "not psycopg 3: install psycopg (3) so that Django's postgresql backend uses it"
        )
    # In autocommit, i.e. outside atomic() unless the caller turned it off by hand.
    if atomic and wrapper.get_autocommit():
        raise TransactionManagementError(
            f"saga.contrib.django.connection({using!r}) is called outside transaction.atomic(): "
            "in autocommit the saga would commit at once, whatever the view does next. "
            "Call it inside the atomic block (or pass atomic=False to mean that)"
        )
    return raw
