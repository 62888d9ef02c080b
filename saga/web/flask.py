"""The dashboard in a Flask app, under a prefix.

With `DispatcherMiddleware` the dashboard sees the request before Flask does, so its
access rule reads the WSGI environ (say, REMOTE_USER set by an authenticating proxy):

    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from saga.web import Access, Dashboard

    dashboard = Dashboard(dsn, schema="saga", access=lambda environ: Access.READ_ONLY)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/saga": dashboard})

To decide access with Flask's own session or login (inside its request context), use
`mount(app, "/saga", dsn, access=lambda: ...)`, which adds a view under the prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .app import Dashboard
from .mount import call, decided_access, decided_user
from .request import Access


def mount(flask_app: Any, prefix: str, dsn: str, *, access: Callable[[], Access],
          user: Callable[[], str | None] | None = None, schema: str | None = None,
          **options: Any) -> Dashboard:
    """Serve the dashboard at *prefix* of *flask_app*; *access* and *user* are called in
    Flask's request context. Return the dashboard (close it when the app stops). Without
    *schema*, SAGA_SCHEMA, else saga, as `Saga`."""
    from flask import Response, request

    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"prefix must start with / and not end with one, got {prefix!r}")
    dashboard = Dashboard(dsn, schema=schema, access=decided_access, user=decided_user,
                          **options)

    def view(rest: str = "") -> Any:
        status, headers, body = call(
            dashboard, request.environ, root=request.script_root + prefix, rest=rest,
            body=request.get_data(), access=access(), user=user() if user else None)
        return Response(body, status=status, headers=headers)

    flask_app.add_url_rule(prefix + "/", "saga_web", view, methods=["GET", "POST"])
    flask_app.add_url_rule(prefix + "/<path:rest>", "saga_web_path", view,
                           methods=["GET", "POST"])
    return dashboard
