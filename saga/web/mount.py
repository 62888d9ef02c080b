"""Run the dashboard inside a framework's view: the framework authenticates, the
dashboard answers. Shared by `saga.web.django` and `saga.web.flask`."""

from __future__ import annotations

import io
from typing import Any, Final

from .app import Dashboard
from .request import Access, Environ

ACCESS_KEY: Final = "saga.web.access"  # the environ keys a mount decides for the app
USER_KEY: Final = "saga.web.user"


def decided_access(environ: Environ) -> Access:
    """The access rule of a mounted app: what the framework's view decided."""
    access = environ.get(ACCESS_KEY)
    return access if isinstance(access, Access) else Access.FORBIDDEN


def decided_user(environ: Environ) -> str | None:
    user = environ.get(USER_KEY)
    return str(user) if user else None


def call(app: Dashboard, environ: Environ, *, root: str, rest: str, body: bytes,
         access: Access, user: str | None) -> tuple[int, list[tuple[str, str]], bytes]:
    """Answer a request for `root + "/" + rest` (the view's URL and the part after it)
    with *app*; return (status, headers, body)."""
    env = dict(environ)
    env.update({"SCRIPT_NAME": root.rstrip("/"), "PATH_INFO": "/" + rest,
                "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                ACCESS_KEY: access, USER_KEY: user})
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: object = None) -> None:
        seen["status"], seen["headers"] = int(status.split(maxsplit=1)[0]), headers

    content = b"".join(app(env, start_response))
    return seen["status"], seen["headers"], content
