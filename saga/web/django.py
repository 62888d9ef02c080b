"""The dashboard in a Django project, behind Django's authentication: staff only unless
told otherwise.

    # urls.py
    from django.urls import include, path
    import saga.web.django

    urlpatterns = [path("saga/", include(saga.web.django.urls(schema="saga")))]

It needs `django.contrib.auth` and the session middleware (for `request.user`). An
anonymous visitor is sent to `settings.LOGIN_URL`; a signed-in user who is not staff
gets 403. *access* replaces the rule: a callable(request) -> Access. The database is
`dsn`, else the `DATABASES` entry *using* (read with a small pool of the dashboard's
own, not Django's connection). The dashboard's forms carry their own CSRF token, so its
view is exempt from Django's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg.conninfo import make_conninfo

from .app import Dashboard
from .mount import call, decided_access, decided_user
from .request import Access

_LIBPQ = ("sslmode", "sslrootcert", "sslcert", "sslkey", "options", "application_name",
          "connect_timeout", "target_session_attrs", "service")


def staff_only(request: Any) -> Access:
    """Full access for active staff users; nothing for anyone else."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return Access.FULL
    return Access.FORBIDDEN


def database_dsn(using: str = "default") -> str:
    """A libpq DSN of Django's database *using*."""
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]

    entry = settings.DATABASES[using]
    params = {"dbname": entry.get("NAME"), "user": entry.get("USER"),
              "password": entry.get("PASSWORD"), "host": entry.get("HOST"),
              "port": entry.get("PORT")}
    params.update({k: v for k, v in (entry.get("OPTIONS") or {}).items() if k in _LIBPQ})
    return make_conninfo(**{k: str(v) for k, v in params.items() if v not in (None, "")})


def urls(*, schema: str | None = None, dsn: str | None = None, using: str = "default",
         access: Callable[[Any], Access] = staff_only, **options: Any) -> list[Any]:
    """URL patterns to `include()` under a prefix of your choice. *options* go to
    `Dashboard` (refresh, title). Without *schema*, SAGA_SCHEMA, else saga, as `Saga`."""
    from django.http import HttpResponse  # type: ignore[import-untyped, unused-ignore]
    from django.urls import re_path  # type: ignore[import-untyped, unused-ignore]
    from django.views.decorators.csrf import (  # type: ignore[import-untyped, unused-ignore]
        csrf_exempt,
    )

    app: Dashboard | None = None

    def dashboard() -> Dashboard:
        nonlocal app  # made at the first request: settings are ready by then
        if app is None:
            app = Dashboard(dsn or database_dsn(using), schema=schema,
                            access=decided_access, user=decided_user, **options)
        return app

    def view(request: Any, rest: str = "") -> Any:
        decided = access(request)
        user = getattr(request, "user", None)
        if decided is Access.FORBIDDEN and user is not None and not user.is_authenticated:
            from django.contrib.auth.views import (  # type: ignore[import-untyped, unused-ignore]
                redirect_to_login,
            )

            return redirect_to_login(request.get_full_path())
        root = request.path[: len(request.path) - len(rest)]
        status, headers, body = call(
            dashboard(), request.META, root=root, rest=rest, body=request.body,
            access=decided, user=user.get_username() if user is not None and
            user.is_authenticated else None)
        response = HttpResponse(body, status=status)
        for key, value in headers:
            if key.lower() == "set-cookie":
                name, _, rest_of = value.partition("=")
                response.cookies[name] = rest_of.split(";", 1)[0]
                response.cookies[name].update(
                    {"path": root or "/", "httponly": True, "samesite": "Strict"})
            elif key.lower() != "content-length":
                response[key] = value
        return response

    return [re_path(r"^(?P<rest>.*)$", csrf_exempt(view), name="saga-web")]
