"""The dashboard's pages and actions, one handler per route."""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from importlib import resources

from .. import steplog
from ..core import Saga
from ..errors import ConcurrencyException, SagaNotFound
from . import forms, pages
from .app import STATIC, Dashboard, route
from .forms import BadRequest
from .queries import ACTIONS
from .request import Access, HTTPError, Request, Response, redirect

logger = logging.getLogger(__name__)


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
    body = resources.files("saga.web").joinpath("static").joinpath(name).read_bytes()
    return Response(body, content_type=STATIC[name])


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
        try:
            with Saga(row["name"], schema=app.schema) as saga, conn.transaction():
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
