"""`Dashboard`: the WSGI application. Routing, access, CSRF, headers and transactions;
the pages themselves are drawn by `saga.web.pages`.

Each GET reads in one read-only REPEATABLE READ transaction (one snapshot, so the
numbers of a page agree); each POST is an action in its own short transactions, then a
redirect (303) to a page that shows its result.
"""

from __future__ import annotations

import enum
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from .. import steplog
from ..core import Saga
from ..errors import ConcurrencyException, SagaNotFound
from ..sqlfiles import check_schema
from . import forms, pages
from .forms import BadRequest
from .html import Markup
from .queries import ACTIONS, WebStore

logger = logging.getLogger(__name__)

Environ = dict[str, Any]
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
                 "app.css": "text/css; charset=utf-8"}


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
                 schema: str = "saga", access: AccessRule | None = None,
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
        self.schema = check_schema(schema)
        self.store = WebStore(schema)
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


def redirect(request: Request, path: str, query: str = "") -> Response:
    return Response(b"", HTTPStatus.SEE_OTHER,
                    headers=[("Location", request.url(path, query))])


# -- pages ------------------------------------------------------------------------------


@route("GET", r"/")
def overview(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    with app.reading() as conn:
        logged = steplog.enabled(conn, app.schema)
        found = app.store.overview(conn, step_log=logged)
    return app.page(request, "Overview", pages.overview(request, found), refresh=True)


@route("GET", r"/instances")
def instances(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    filters = forms.filters(request.query)
    limit, before = forms.page_size(request.query), forms.before(request.query)
    with app.reading() as conn:
        rows = app.store.instances(conn, filters, limit + 1, before)
    body = pages.instances(request, filters, rows[:limit], more=len(rows) > limit,
                           limit=limit, first=before is None)
    return app.page(request, "Instances", body, refresh=before is None)


@route("GET", r"/instances/(\d{1,18})")
def instance(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    full = forms.one(request.query, "full")
    if full not in (None, "input", "state"):
        raise BadRequest(f"parameter 'full' must be input or state, got {full!r}")
    with app.reading() as conn:
        row = app.store.instance(conn, int(match[1]))
        if row is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no instance has row id {match[1]}")
        logged = steplog.enabled(conn, app.schema)
        history = steplog.history(conn, app.schema, row["id"])
    body = pages.instance(request, row, history, logged=logged, full=full)
    return app.page(request, f"Instance {row['instance_id']}", body,
                    refresh=row["status"] in (0, 1))


@route("GET", r"/runners")
def runners(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    with app.reading() as conn:
        found = app.store.runners(conn)
    return app.page(request, "Runners", pages.runners(request, found), refresh=True)


@route("GET", r"/static/([a-z]+\.[a-z]+)")
def static(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    name = match[1]
    if name not in STATIC:
        raise HTTPError(HTTPStatus.NOT_FOUND, "no such file")
    body = resources.files("saga.web").joinpath("static", name).read_bytes()
    return Response(body, content_type=STATIC[name],
                    headers=[("X-Static", "1")])


# -- actions ----------------------------------------------------------------------------


@route("POST", r"/instances/(\d{1,18})/(retry|cancel)")
def act(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    app.check_action(request)
    row_id, action = int(match[1]), match[2]
    with app.writing() as conn:
        row = app.store.instance(conn, row_id)
        if row is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no instance has row id {row_id}")
        # A Saga without steps only steers rows; on this connection it opens no pool.
        saga = Saga(row["name"], schema=app.schema)
        try:
            with conn.transaction():
                getattr(saga, action)(row["instance_id"], conn=conn)
        except (ConcurrencyException, SagaNotFound) as e:
            raise HTTPError(HTTPStatus.CONFLICT, str(e)) from None
    logger.info("%s: %s instance %s of saga %s (row %d)", request.user or "someone",
                action, row["instance_id"], row["name"], row_id,
                extra={"action": f"web_{action}", "user": request.user, "saga": row["name"],
                       "instance": row["instance_id"], "id": row_id})
    return redirect(request, f"/instances/{row_id}", f"done={action}")


@route("GET", r"/bulk/(retry|cancel)")
def confirm_bulk(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    if request.access is not Access.FULL:
        raise HTTPError(HTTPStatus.FORBIDDEN, "this dashboard is read-only for you")
    filters = forms.filters(request.query)
    with app.reading() as conn:
        count = app.store.matching(conn, filters, match[1])
    return app.page(request, f"Bulk {match[1]}",
                    pages.confirm_bulk(request, match[1], filters, count))


@route("POST", r"/bulk/(retry|cancel)")
def bulk(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    app.check_action(request)
    action = match[1]
    assert action in ACTIONS
    filters = forms.filters(request.form)
    with app.writing() as conn:
        done = app.store.bulk(conn, action, filters)
    logger.info("%s: bulk %s of %d instance(s) (%s)", request.user or "someone", action,
                done, forms.query_string(filters) or "no filter",
                extra={"action": f"web_bulk_{action}", "user": request.user, "count": done})
    return redirect(request, "/instances",
                    forms.query_string(filters, done=f"bulk-{action}", n=done))
