"""`Dashboard`: the WSGI application. Routing, access, CSRF, headers and transactions;
the pages themselves are drawn by `saga.web.pages`.

Each GET reads in one read-only REPEATABLE READ transaction (one snapshot, so the
numbers of a page agree); each POST is an action in its own short transactions, then a
redirect (303) to a page that shows its result.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from ..core import default_schema
from ..sqlfiles import check_schema
from . import forms, pages
from .forms import BadRequest
from .html import Markup
from .queries import WebStore
from .request import (
    Access,
    AccessRule,
    Environ,
    HTTPError,
    Request,
    Response,
    UserRule,
    read_only,
    remote_user,
)

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

CSRF_COOKIE: Final = "saga_csrf"
CSRF_FIELD: Final = "csrf"
MAX_BODY: Final = 64 * 1024
STATEMENT_TIMEOUT_MS: Final = 10_000  # a page that takes longer fails, and holds nothing
REFRESH_SECONDS: Final = 5
# No inline script or style at all: everything the page runs or wears is served below.
CSP: Final = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
              "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
              "base-uri 'none'")
STATIC: Final = {"app.js": "text/javascript; charset=utf-8",
                 "app.css": "text/css; charset=utf-8", "icon.svg": "image/svg+xml"}


Handler = Callable[["Dashboard", Request, re.Match[str]], Response]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _ROUTES.append((method, re.compile(pattern + r"\Z"), handler))
        return handler
    return register


class Dashboard:
    """The dashboard of one schema, as a WSGI application.

    *access* decides per request (from the WSGI environ) whether it may see and act,
    only see, or nothing; the default lets everyone look and nobody act. *user* names
    who acts, for the log. Connections come from *pool*, or from a small pool of the
    app's own on *dsn* (opened at the first request, closed by `close()`).
    """

    def __init__(self, dsn: str | None = None, *, pool: ConnectionPool[Any] | None = None,
                 schema: str | None = None, access: AccessRule | None = None,
                 user: UserRule | None = None, refresh: int = REFRESH_SECONDS,
                 title: str = "pgsaga") -> None:
        if (dsn is None) == (pool is None):
            raise ValueError("Dashboard needs a dsn or a pool (one of them)")
        if access is not None and not callable(access):
            raise TypeError(f"access must be a callable(environ) -> Access, got {access!r}")
        if user is not None and not callable(user):
            raise TypeError(f"user must be a callable(environ) -> str | None, got {user!r}")
        if not isinstance(refresh, int) or refresh < 0:
            raise ValueError(f"refresh must be a whole number of seconds >= 0, got {refresh!r}")
        # Without *schema*, the one a `Saga` that names none uses (SAGA_SCHEMA, else saga).
        self.schema = default_schema() if schema is None else check_schema(schema)
        self.store = WebStore(self.schema)
        self.access = access or read_only
        self.user = user or remote_user
        self.refresh = refresh
        self.title = title
        self._dsn = dsn
        self._pool = pool
        self._own_pool = pool is None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Dashboard schema={self.schema!r}>"

    def close(self) -> None:
        """Close the app's own pool (a pool passed in stays open)."""
        with self._lock:
            if self._own_pool and self._pool is not None:
                self._pool.close()
                self._pool = None

    # -- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self.handle(environ)
        except HTTPError as e:
            response = Response(pages.error(e.status, str(e)).encode(), e.status)
        except Exception:
            logger.exception("dashboard request failed", extra={"action": "web_error"})
            response = Response(pages.error(HTTPStatus.INTERNAL_SERVER_ERROR,
                                            "the dashboard failed: see the server's log")
                                .encode(), HTTPStatus.INTERNAL_SERVER_ERROR)
        headers = [("Content-Type", response.content_type),
                   ("Content-Length", str(len(response.body))),
                   ("Content-Security-Policy", CSP),
                   ("X-Content-Type-Options", "nosniff"),
                   ("X-Frame-Options", "DENY"),
                   ("Referrer-Policy", "same-origin"),
                   ("Cache-Control", "no-store"),
                   *response.headers]
        start_response(f"{response.status.value} {response.status.phrase}", headers)
        return [response.body]

    def handle(self, environ: Environ) -> Response:
        request = self._request(environ)
        if request.access is Access.FORBIDDEN:
            raise HTTPError(HTTPStatus.FORBIDDEN, "you may not see this dashboard")
        allowed = False
        for method, pattern, handler in _ROUTES:
            match = pattern.match(request.path)
            if match is None:
                continue
            allowed = True
            if method == request.method or (method == "GET" and request.method == "HEAD"):
                try:
                    response = handler(self, request, match)
                except BadRequest as e:
                    raise HTTPError(HTTPStatus.BAD_REQUEST, str(e)) from None
                if request.new_csrf:
                    response.headers.append(("Set-Cookie", self._csrf_cookie(request)))
                return response
        if allowed:
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{request.method} is not allowed here")
        raise HTTPError(HTTPStatus.NOT_FOUND, "no such page")

    def _request(self, environ: Environ) -> Request:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        token = self._cookie(environ, CSRF_COOKIE)
        new = token is None or not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", token)
        request = Request(
            environ=environ, method=method, path=str(environ.get("PATH_INFO") or "/"),
            root=str(environ.get("SCRIPT_NAME", "")).rstrip("/"), query=query,
            access=self.access(environ), user=self.user(environ),
            csrf=secrets.token_urlsafe(32) if new or token is None else token, new_csrf=new)
        if method == "POST":
            request.form = self._form(environ)
        return request

    @staticmethod
    def _cookie(environ: Environ, name: str) -> str | None:
        try:
            morsel = SimpleCookie(str(environ.get("HTTP_COOKIE", ""))).get(name)
        except CookieError:
            return None
        return morsel.value if morsel is not None else None

    @staticmethod
    def _form(environ: Environ) -> dict[str, list[str]]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length > MAX_BODY:
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "the form is too large")
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        kind = str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()
        if body and kind != "application/x-www-form-urlencoded":
            raise HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                            f"forms must be application/x-www-form-urlencoded, not {kind!r}")
        return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)

    def _csrf_cookie(self, request: Request) -> str:
        # HttpOnly and SameSite=Strict: another site can neither read it nor send it.
        return (f"{CSRF_COOKIE}={request.csrf}; Path={request.root or '/'}; HttpOnly; "
                "SameSite=Strict")

    def check_action(self, request: Request) -> None:
        """Refuse an action unless the request may act and proves it comes from a page of
        this app: the form's token equals the cookie's (double submit), and a browser's
        Origin, when sent, is this host."""
        if request.access is not Access.FULL:
            raise HTTPError(HTTPStatus.FORBIDDEN, "this dashboard is read-only for you")
        sent = forms.one(request.form, CSRF_FIELD) or ""
        if request.new_csrf or not hmac.compare_digest(sent.encode(), request.csrf.encode()):
            raise HTTPError(HTTPStatus.FORBIDDEN,
                            "the form's CSRF token is missing or wrong: reload the page")
        origin = request.environ.get("HTTP_ORIGIN")
        host = request.environ.get("HTTP_HOST")
        if origin and origin != "null" and host and urlsplit(origin).netloc != host:
            raise HTTPError(HTTPStatus.FORBIDDEN, "the form was sent from another site")

    # -- database -----------------------------------------------------------------------

    def pool(self) -> ConnectionPool[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self._dsn or "", min_size=1, max_size=4, open=True, name="saga-web",
                    kwargs={"autocommit": True,
                            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"})
            return self._pool

    @contextmanager
    def reading(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection in a read-only snapshot, for one page."""
        with self.pool().connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    @contextmanager
    def writing(self) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection, for an action: each statement commits on its own."""
        with self.pool().connection() as conn:
            yield conn

    def page(self, request: Request, title: str, body: Markup, *, refresh: bool = False,
             status: HTTPStatus = HTTPStatus.OK) -> Response:
        html = pages.layout(request, self, title, body, refresh=refresh and self.refresh)
        return Response(html.encode(), status)


