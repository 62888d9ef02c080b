"""The web dashboard: a WSGI application (standard library only) that shows the saga
instances of a schema and, where its access rule allows, retries and cancels them.

    from saga.web import Access, Dashboard
    app = Dashboard(dsn, schema="saga", access=lambda environ: Access.READ_ONLY)

Mount it in Django (`saga.web.django`), in Flask (`saga.web.flask`), or run it on its
own: `python -m saga web --dsn ... --bind 127.0.0.1:8080`.
"""

from __future__ import annotations

from . import routes, schedules  # noqa: F401  (register the pages and actions)
from .app import Dashboard
from .request import Access, AccessRule, UserRule, read_only, remote_user

__all__ = ["Access", "AccessRule", "Dashboard", "UserRule", "read_only", "remote_user"]
