"""The pages, drawn from the rows that `saga.web.app` read. Every value goes through
`render`, which escapes it: ids, steps, inputs, states and errors are the users' data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from ..admin.output import age, one_line, when
from ..records import Status
from . import chart, tasks
from .forms import query_string
from .html import Markup, join, render
from .queries import Count, Filters, Overview

if TYPE_CHECKING:
    from .app import Dashboard
    from .request import Request

SHOWN: Final = 4000  # characters of an input or state shown before "show all"
ERROR_GIST: Final = 80
DONE: Final = {  # the messages a redirect after an action may ask for, by key
    "retry": "Retried: the instance is PENDING again.",
    "cancel": "Cancelled (a RUNNING instance ends at its step boundary).",
    "bulk-retry": "Retried {n} instance(s).",
    "bulk-cancel": "Cancelled {n} instance(s) (RUNNING ones at their step boundary).",
    "pause": "Paused: the schedule makes no tick until it is resumed.",
    "resume": "Resumed: the schedule ticks again from now on (the ticks that fell while "
              "it was paused are not made).",
}


def status_badge(code: int) -> Markup:
    try:
        name = Status(code).name.lower()
    except ValueError:
        name = str(code)
    return render('<span class="status s{code}">{name}</span>', code=code, name=name)


def count(value: Count | None) -> Markup:
    if value is None or (value.exact and value.value == 0):
        return render('<span class="zero">0</span>')
    if value.exact:
        return render("{n:,}", n=value.value)
    return render('<span class="estimate" title="the planner\'s estimate">≈{n:,}</span>',
                  n=value.value)


def link(request: Request, path: str, label: object, query: str = "") -> Markup:
    return render('<a href="{href}">{label}</a>', href=request.url(path, query), label=label)


def csrf_field(request: Request) -> Markup:
    return render('<input type="hidden" name="csrf" value="{token}">', token=request.csrf)


def layout(request: Request, app: Dashboard, title: str, body: Markup, *,
           refresh: int | bool = False) -> Markup:
    nav = join(render('<a href="{href}"{current}>{label}</a>', href=request.url(path),
                      label=label, current=Markup(' aria-current="page"')
                      if request.path == path else Markup(""))
               for path, label in (("/", "Overview"), ("/instances", "Instances"),
                                   ("/runners", "Runners"),
                                   ("/schedules", "Schedules")))
    who = request.access.value + (f" · {request.user}" if request.user else "")
    return render(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{title} · {app}</title>"
        '<link rel="icon" href="{icon}" type="image/svg+xml">'
        '<link rel="stylesheet" href="{css}"><script src="{js}" defer></script></head>'
        '<body data-refresh="{refresh}"><header><strong class="brand">{app}</strong>'
        '<nav>{nav}</nav><span class="who">schema {schema} · {who}</span>'
        '<button type="button" id="refresh-toggle" hidden>pause refresh</button></header>'
        "<main><h1>{title}</h1>{flash}{body}</main></body></html>",
        title=title, app=app.title, css=request.url("/static/app.css"),
        icon=request.url("/static/icon.svg"),
        js=request.url("/static/app.js"), refresh=int(refresh), nav=nav,
        schema=app.schema, who=who, flash=flash(request), body=body)


def flash(request: Request) -> Markup:
    key = (request.query.get("done") or [""])[0]
    if key not in DONE:
        return Markup("")
    n = (request.query.get("n") or ["0"])[0]
    return render('<p class="flash" role="status">{text}</p>',
                  text=DONE[key].format(n=int(n) if n.isdigit() else 0))


def error(status: HTTPStatus, message: str) -> Markup:
    return render('<!doctype html><html lang="en"><head><meta charset="utf-8">'
                  "<title>{code} {phrase}</title></head><body><h1>{code} {phrase}</h1>"
                  '<p class="problem">{message}</p></body></html>',
                  code=status.value, phrase=status.phrase, message=message)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str,
          cls: str = "") -> Markup:
    if not rows:
        return render('<p class="empty">{empty}</p>', empty=empty)
    head = join(render("<th>{h}</th>", h=h) for h in headers)
    body = join(render("<tr>{cells}</tr>", cells=join(render("<td>{c}</td>", c=c) for c in r))
                for r in rows)
    return render('<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}'
                  "</tbody></table>", cls=cls, head=head, body=body)


# -- overview ---------------------------------------------------------------------------


def overview(request: Request, found: Overview) -> Markup:
    statuses = list(Status)
    backlog: dict[str, tuple[int, bool, float]] = {}
    for row in found.due:
        n, exact, lag = backlog.get(row["name"], (0, True, 0.0))
        backlog[row["name"]] = (n + row["count"].value, exact and row["count"].exact,
                                max(lag, row["lag"]))
    rows = []
    for name in sorted(found.counts):
        per = found.counts[name]
        due = backlog.get(name)
        rows.append([link(request, "/instances", name, query_string(Filters(saga=name))),
                     *(link(request, "/instances", count(per.get(int(s))),
                            query_string(Filters(saga=name, status=int(s))))
                       for s in statuses),
                     count(Count(*due[:2])) if due else count(None),
                     age(due[2]) if due else "-"])
    sagas = table(["saga", *(s.name.lower() for s in statuses), "due", "lag"], rows,
                  "No saga instances yet.", "numbers")
    note = Markup("") if found.exact else render(
        '<p class="note">≈: an estimate from the planner\'s statistics (the table is big; '
        "exact counts would read all of it).</p>")
    orphans = [r for r in found.due if not r["served"]]
    orphaned = table(["saga", "step", "due", "lag"],
                     [[r["name"], link(request, "/instances", r["step"], query_string(
                         Filters(saga=r["name"], step=r["step"], status=0))),
                       count(r["count"]), age(r["lag"])] for r in orphans],
                     "None: a live runner serves every due step.", "numbers")
    what = "steps finished" if found.step_log else "instances finished"
    history = Markup("") if found.step_log else render(
        '<p class="note">Step history is not recorded (the step log is off: '
        "<code>python -m saga steplog on</code>), so this counts the instances that "
        "finished.</p>")
    return render(
        "<section><h2>Instances by saga and status</h2>{sagas}{note}</section>"
        "<section><h2>{what} per minute, last hour</h2>{chart}{history}</section>"
        "<section><h2>Live runners</h2>{runners}</section>"
        "<section><h2>Orphaned due steps</h2>"
        '<p class="note">Due PENDING rows of a step that no live runner serves.</p>'
        "{orphaned}</section>",
        sagas=sagas, note=note, what=what.capitalize(),
        chart=chart.per_minute(found.per_minute, what), history=history,
        runners=runner_table(request, [r for r in found.runners if r["live"]]),
        orphaned=orphaned)


def runner_table(request: Request, rows: Sequence[dict[str, Any]]) -> Markup:
    return table(["id", "host", "pid", "heartbeat", "live", "started", "serves"], [
        [r["id"], r["hostname"], r["pid"], age(r["heartbeat_age"]) + " ago",
         "yes" if r["live"] else "expired", when(r["started_at"]),
         "; ".join(f"{saga}: {', '.join(steps)}" for saga, steps in sorted(r["serves"].items()))]
        for r in rows], "No live runner.")


def runners(request: Request, rows: Sequence[dict[str, Any]]) -> Markup:
    return render('<p class="note">Every runner row: an expired one is dead and waits to '
                  "be reaped.</p>{table}", table=runner_table(request, rows))


# -- instances --------------------------------------------------------------------------


def filter_form(request: Request, f: Filters, limit: int) -> Markup:
    options = join(render('<option value="{v}"{sel}>{v}</option>', v=s.name.lower(),
                          sel=Markup(" selected") if f.status == int(s) else Markup(""))
                   for s in Status)
    field = '<label>{label}<input name="{name}" value="{value}"{extra}></label>'

    def moment(value: datetime | None) -> str:
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M") if value else ""

    return render(
        '<form class="filters" method="get" action="{action}">{saga}'
        '<label>status<select name="status"><option value="">any</option>{options}'
        "</select></label>{step}{prefix}{since}{until}"
        '<input type="hidden" name="limit" value="{limit}">'
        '<button type="submit">Filter</button> <a href="{action}">clear</a></form>',
        action=request.url("/instances"), options=options, limit=limit,
        saga=render(field, label="saga", name="saga", value=f.saga or "", extra=""),
        step=render(field, label="step", name="step", value=f.step or "", extra=""),
        prefix=render(field, label="id starts with", name="prefix", value=f.prefix or "",
                      extra=""),
        since=render(field, label="updated since (UTC)", name="since",
                     value=moment(f.since), extra=Markup(' type="datetime-local"')),
        until=render(field, label="until", name="until", value=moment(f.until),
                     extra=Markup(' type="datetime-local"')))


def instances(request: Request, f: Filters, rows: Sequence[dict[str, Any]], *, more: bool,
              limit: int, first: bool) -> Markup:
    listed = table(["id", "saga", "instance", "step", "status", "attempts", "updated",
                    "error"], [
        [link(request, f"/instances/{r['id']}", r["id"]), r["name"],
         link(request, f"/instances/{r['id']}", r["instance_id"]), r["step"],
         status_badge(r["status"]), r["attempts"], when(r["updated_at"]),
         one_line(r["error"], ERROR_GIST) or ""] for r in rows],
        "No instance matches.", "instances")
    pager = Markup("")
    if more:
        last = rows[-1]
        pager = render('<p class="pager"><a rel="next" href="{href}">older →</a></p>',
                       href=request.url("/instances", query_string(
                           f, limit=limit, before_at=last["updated_at"].isoformat(),
                           before_id=last["id"])))
    if not first:
        pager = render('{pager}<p class="pager"><a href="{href}">← newest</a></p>',
                       pager=pager, href=request.url("/instances", query_string(f, limit=limit)))
    bulk = Markup("")
    if request.access.value == "full":
        bulk = render('<p class="bulk">With every instance this filter selects: '
                      '<a class="button" href="{retry}">retry the ERROR ones…</a> '
                      '<a class="button" href="{cancel}">cancel the PENDING/RUNNING ones…</a>'
                      "</p>", retry=request.url("/bulk/retry", query_string(f)),
                      cancel=request.url("/bulk/cancel", query_string(f)))
    return render("{form}{bulk}{listed}{pager}", form=filter_form(request, f, limit),
                  bulk=bulk, listed=listed, pager=pager)


def confirm_bulk(request: Request, action: str, f: Filters, found: Count) -> Markup:
    hidden = join(render('<input type="hidden" name="{k}" value="{v}">', k=k, v=v)
                  for k, v in (("saga", f.saga), ("step", f.step), ("prefix", f.prefix),
                               ("status", None if f.status is None
                                else Status(f.status).name.lower()),
                               ("since", f.since and f.since.isoformat()),
                               ("until", f.until and f.until.isoformat())) if v)
    what = "ERROR instances to retry" if action == "retry" else \
        "PENDING or RUNNING instances to cancel"
    return render(
        '<p class="confirm">{n} {what} match this filter ({filter}).</p>'
        '<form method="post" action="{action}">{csrf}{hidden}'
        '<button type="submit" class="danger">{verb} them</button> '
        '<a href="{back}">back</a></form>',
        n=count(found), what=what, filter=query_string(f) or "no filter: every instance",
        action=request.url(f"/bulk/{action}"), csrf=csrf_field(request), hidden=hidden,
        verb=action.capitalize(), back=request.url("/instances", query_string(f)))


# -- one instance -----------------------------------------------------------------------


def pretty(text: str | None, length: int, request: Request, part: str, full: bool) -> Markup:
    if text is None:
        return render('<pre class="json">null</pre>')
    try:
        shown = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        shown = text
    if full or len(shown) <= SHOWN:
        return render('<pre class="json">{v}</pre>', v=shown)
    return render('<pre class="json">{v}…</pre><p><a href="{href}">show all ({n:,} '
                  "characters)</a></p>", v=shown[:SHOWN], n=length,
                  href=request.url(request.path, f"full={part}"))


def instance(request: Request, row: dict[str, Any], history: Sequence[dict[str, Any]], *,
             logged: bool, full: str | None) -> Markup:
    fields = [("saga", row["name"]), ("instance", row["instance_id"]),
              ("status", status_badge(row["status"])), ("step", row["step"]),
              ("attempts", row["attempts"]), ("runner", row["runner_id"] or "-"),
              ("run after", when(row["run_after"])), ("created", when(row["created_at"])),
              ("updated", when(row["updated_at"])),
              ("cancel requested", "yes" if row["cancel_requested"] else "no")]
    facts = join(render("<dt>{k}</dt><dd>{v}</dd>", k=k, v=v) for k, v in fields)
    actions = []
    if request.access.value == "full":
        base = f"/instances/{row['id']}"
        if row["status"] == Status.ERROR:
            actions.append(render('<form method="post" action="{a}">{csrf}<button '
                                  'type="submit" name="go" value="retry">Retry</button>'
                                  "</form>", a=request.url(base + "/retry"),
                                  csrf=csrf_field(request)))
        if row["status"] in (Status.PENDING, Status.RUNNING) and not row["cancel_requested"]:
            actions.append(render('<form method="post" action="{a}" data-confirm="Cancel '
                                  'this instance?">{csrf}<button type="submit" class="danger" '
                                  'name="go" value="cancel">Cancel</button></form>',
                                  a=request.url(base + "/cancel"), csrf=csrf_field(request)))
    error = Markup("") if not row["error"] else render(
        '<section><h2>Error</h2><pre class="error">{e}</pre></section>', e=row["error"])
    return render(
        '<dl class="facts">{facts}</dl><div class="actions">{actions}</div>{error}{task}'
        "<section><h2>Step timeline</h2>{timeline}</section>"
        "<section><h2>Input</h2>{input}</section><section><h2>State</h2>{state}</section>",
        facts=facts, actions=join(actions), error=error, task=tasks.section(row),
        timeline=timeline(history, logged=logged),
        input=pretty(row["input"], row["input_length"] or 0, request, "input",
                     full == "input"),
        state=pretty(row["state"], row["state_length"] or 0, request, "state",
                     full == "state"))


def outcome(row: dict[str, Any]) -> Markup:
    if row["ended_at"] is None:
        return render('<span class="status s1">running</span>')
    status = row["status"]
    if status == Status.RUNNING:
        return render("ran on to {step}", step=row["next_step"])
    if status == Status.PENDING:
        if row["error"]:
            return render('<span class="status s3">failed</span>: retry later')
        return render("went on to {step}, later", step=row["next_step"])
    return status_badge(status)


def timeline(rows: Sequence[dict[str, Any]], *, logged: bool) -> Markup:
    if not rows:
        return render('<p class="empty">{text}</p>', text=(
            "No step recorded for this instance yet." if logged else
            "History not recorded: the step log is off for this schema "
            "(python -m saga steplog on)."))
    now = datetime.now(timezone.utc)
    listed = table(["#", "step", "attempt", "started", "took", "ended in", "runner", "error"], [
        [i + 1, r["step"], r["attempt"], when(r["started_at"]),
         age(r["seconds"]) if r["seconds"] is not None else "-", outcome(r),
         r["runner_id"] or "-", one_line(r["error"], ERROR_GIST) or ""]
        for i, r in enumerate(rows)], "", "timeline")
    return render("{svg}{listed}", svg=chart.timeline(rows, now), listed=listed)
