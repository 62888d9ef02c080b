"""What the dashboard's handlers share: access levels, the request, the response."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

Environ = dict[str, Any]


class Access(enum.Enum):
    """What a request may do: everything, only look, or nothing."""

    FULL = "full"
    READ_ONLY = "read-only"
    FORBIDDEN = "forbidden"


AccessRule = Callable[[Environ], Access]
UserRule = Callable[[Environ], "str | None"]


def read_only(environ: Environ) -> Access:
    """The default access rule: anyone who reaches the app may look, nobody may act."""
    return Access.READ_ONLY


def remote_user(environ: Environ) -> str | None:
    """The default user rule: REMOTE_USER, as a server or proxy in front sets it."""
    user = environ.get("REMOTE_USER")
    return str(user) if user else None


class HTTPError(Exception):
    """Answer with *status* and a short page saying *message*."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    """What a handler needs of the WSGI environ."""

    environ: Environ
    method: str
    path: str
    root: str  # SCRIPT_NAME: where the app is mounted
    query: dict[str, list[str]]
    access: Access
    user: str | None
    csrf: str
    new_csrf: bool
    form: dict[str, list[str]] = field(default_factory=dict)

    def url(self, path: str, query: str = "") -> str:
        """The absolute path of *path* in the app, with a query string if given."""
        return self.root + path + (f"?{query}" if query else "")


@dataclass
class Response:
    body: bytes
    status: HTTPStatus = HTTPStatus.OK
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def redirect(request: Request, path: str, query: str = "") -> Response:
    return Response(b"", HTTPStatus.SEE_OTHER,
                    headers=[("Location", request.url(path, query))])


