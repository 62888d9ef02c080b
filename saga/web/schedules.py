"""The dashboard's Schedules page and its pause/resume actions.

The rows are `saga.schedules`' own (`list_schedules` of `sql/schedules.sql`), and pause
and resume are `ScheduleStore.steer`, as the admin CLI's `pause`/`resume` use them: the
dashboard adds only the page, the access check and the log line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from psycopg import errors

from ..admin.output import age, one_line, when
from ..core import MAX_NAME
from ..schedules.spec import MAX_SCHEDULE_NAME
from ..schedules.store import ScheduleStore
from . import forms
from .app import Dashboard, route
from .forms import BadRequest
from .html import Markup, join, render
from .pages import ERROR_GIST, csrf_field, link, status_badge, table
from .queries import Filters
from .request import Access, HTTPError, Request, Response, redirect

logger = logging.getLogger(__name__)

@lru_cache(maxsize=16)
def store(schema: str) -> ScheduleStore:
    """The schedule queries of *schema*, rendered once per process."""
    return ScheduleStore(schema)


@route("GET", r"/schedules")
def schedules(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    saga = forms.text(request.query, "saga", MAX_NAME)
    try:
        with app.reading() as conn:
            rows = store(app.schema).rows(conn, saga)
    except errors.InsufficientPrivilege:
        # A dashboard role granted only what the instance pages need: say so, not 500.
        body = render('<p class="problem">This dashboard\'s database role may not read '
                      "<code>{schema}.schedule</code> (GRANT SELECT on it to show "
                      "schedules here).</p>", schema=app.schema)
        return app.page(request, "Schedules", body)
    except errors.UndefinedTable:
        body = render('<p class="problem">The schema {schema} has no schedule table yet: '
                      "run the migrations (<code>python -m saga migrate</code>).</p>",
                      schema=app.schema)
        return app.page(request, "Schedules", body)
    return app.page(request, "Schedules", page(request, rows), refresh=True)


@route("POST", r"/schedules/(pause|resume)")
def steer(app: Dashboard, request: Request, match: re.Match[str]) -> Response:
    app.check_action(request)
    action = match[1]
    saga = forms.text(request.form, "saga", MAX_NAME)
    name = forms.text(request.form, "schedule", MAX_SCHEDULE_NAME)
    if saga is None or name is None:
        raise BadRequest("parameters 'saga' and 'schedule' are required")
    with app.writing() as conn, conn.transaction():
        found = store(app.schema).steer(conn, saga, name, pause=action == "pause")
    if not found:
        raise HTTPError(HTTPStatus.NOT_FOUND, f"saga {saga!r} has no schedule {name!r}")
    logger.info("%s: %s schedule %s of saga %s", request.user or "someone", action, name,
                saga, extra={"action": f"web_schedule_{action}", "user": request.user,
                             "saga": saga, "schedule": name})
    return redirect(request, "/schedules", f"done={action}")


# -- drawing ----------------------------------------------------------------------------


def page(request: Request, rows: Sequence[dict[str, Any]]) -> Markup:
    full = request.access is Access.FULL
    headers = ["schedule", "saga", "step", "timing", "next tick", "last tick",
               "last instance", "paused", "overdue", "retired", "error"]
    listed = table(headers + (["action"] if full else []), [
        [r["name"], link(request, "/instances", r["saga"], forms.query_string(
            Filters(saga=r["saga"]))), r["step"], f"{r['expression']} {r['tz']}",
         when(r["next_tick"]), when(r["last_tick"]), last_instance(request, r),
         "yes" if r["paused"] else "no", overdue(r),
         "-" if r["retired_at"] is None else when(r["retired_at"]),
         one_line(r["last_error"], ERROR_GIST) or "",
         *([action(request, r)] if full else [])]
        for r in rows], "No schedules: none is declared, or no worker has recorded them yet.",
        "schedules")
    return render('<p class="note">Schedules as the workers recorded them. Overdue: the '
                  "next tick is later than its maximum lateness (no worker serves it). "
                  "Retired: the code no longer declares it; it ticks no more.</p>{listed}",
                  listed=listed)


def last_instance(request: Request, row: dict[str, Any]) -> Markup:
    if row["last_instance"] is None:
        return render("-")
    if row["last_id"] is None:  # purged since
        return render('{id} <span class="zero">(gone)</span>', id=row["last_instance"])
    return join([link(request, f"/instances/{row['last_id']}", row["last_instance"]),
                 Markup(" "), status_badge(row["last_status"])])


def overdue(row: dict[str, Any]) -> str:
    late = row["overdue"]
    active = row["retired_at"] is None and not row["paused"]
    return age(late) if active and late is not None and late > row["max_lateness"] else "no"


def action(request: Request, row: dict[str, Any]) -> Markup:
    if row["retired_at"] is not None:
        return render("-")
    verb = "resume" if row["paused"] else "pause"
    return render('<form method="post" action="{a}">{csrf}'
                  '<input type="hidden" name="saga" value="{saga}">'
                  '<input type="hidden" name="schedule" value="{name}">'
                  '<button type="submit" name="go" value="{verb}">{label}</button></form>',
                  a=request.url(f"/schedules/{verb}"), csrf=csrf_field(request),
                  saga=row["saga"], name=row["name"], verb=verb, label=verb.capitalize())
