"""`WebStore`: the dashboard's reads and bulk actions, from `sql/web.sql`.

Big tables are the point: a page reads index ranges, and counts that would scan many
rows are the planner's estimates (`EXPLAIN`), which the pages label as such. Every
method takes a connection and never commits; the app runs each page in one read-only
REPEATABLE READ transaction (one snapshot) and each action in its own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

from ..sqlfiles import check_schema, named_queries

Conn = psycopg.Connection[Any]
Row = dict[str, Any]

EXACT_BELOW: Final = 10_000  # estimated rows under which a count is run for real
SMALL_TABLE: Final = 200_000  # rows under which the overview counts everything exactly
BULK_BATCH: Final = 500  # rows per statement of a bulk action
BULK_MAX: Final = 100_000  # rows one bulk request changes at most


class Count(NamedTuple):
    """A row count, exact or the planner's estimate."""

    value: int
    exact: bool


@dataclass(frozen=True, slots=True)
class Filters:
    """What the instance list selects; None is "any". Checked by `saga.web.forms`."""

    saga: str | None = None
    status: int | None = None
    step: str | None = None
    prefix: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def fragments(self) -> tuple[list[str], dict[str, object]]:
        """The names of the filter_* blocks this selects, and their parameters."""
        names: list[str] = []
        params: dict[str, object] = {}
        for key in ("saga", "status", "step", "since", "until"):
            value = getattr(self, key)
            if value is not None:
                names.append(f"filter_{key}")
                params[key] = value
        if self.status is not None and self.status >= 3:
            names.append("filter_failed")
        if self.prefix:
            names.append("filter_prefix")
            params["prefix"] = like_prefix(self.prefix)
        return names, params


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview page's numbers, read in one snapshot."""

    counts: dict[str, dict[int, Count]]  # saga -> status -> count
    due: list[Row]  # per (saga, step): name, step, lag, served, count
    runners: list[Row]
    per_minute: list[int]  # 60 values, the oldest minute first
    step_log: bool  # per_minute counts steps (True) or finished instances
    exact: bool = field(default=True)


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching what starts with *prefix* (its wildcards escaped)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class WebStore:
    """The dashboard's queries on one schema, rendered once."""

    def __init__(self, schema: str) -> None:
        self.schema = check_schema(schema)
        self._text = named_queries("web.sql")
        self._q = {name: self._render(text) for name, text in self._text.items()}
        self.channel = f"pgsaga_{schema}"
        self.done_channel = f"pgsaga_{schema}_done"
        self.table = sql.Identifier(schema, "instance").as_string(None)

    def __repr__(self) -> str:
        return f"<WebStore schema={self.schema!r}>"

    def _render(self, text: str) -> str:
        return sql.SQL(text).format(schema=sql.Identifier(self.schema)).as_string(None)

    def _where(self, query: str, fragments: list[str]) -> str:
        """*query* (which ends in `WHERE true`) with the filter_* blocks *fragments*
        appended, then its `_rest` block: fixed SQL text from web.sql only."""
        conditions = "".join(f"\n   AND ({self._text[f]})" for f in fragments)
        return self._render(self._text[query] + conditions + "\n"
                            + self._text.get(query + "_rest", ""))

    def _tuples(self, conn: Conn, query: str, params: Mapping[str, object]) -> list[Any]:
        return conn.cursor(row_factory=tuple_row).execute(query, params).fetchall()

    def _dicts(self, conn: Conn, query: str, params: Mapping[str, object]) -> list[Row]:
        return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()

    # -- counting -----------------------------------------------------------------------

    def estimate(self, conn: Conn, query: str, params: Mapping[str, object]) -> int:
        """The planner's estimate of the rows *query* (a `SELECT count(*) FROM ...`)
        counts: the rows of its `SELECT 1 FROM ...`, which the plan's top node gives
        (a parallel plan's Gather counts every worker's)."""
        probe = query.replace("SELECT count(*) FROM", "SELECT 1 FROM", 1)
        if probe == query:
            raise ValueError(f"not a SELECT count(*) query: {query[:60]!r}")
        [(plan,)] = self._tuples(conn, "EXPLAIN (FORMAT JSON) " + probe, params)
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"].get("Plan Rows", 0))

    def count(self, conn: Conn, query: str, params: Mapping[str, object]) -> Count:
        """Count exactly when the estimate is small, else return the estimate."""
        guess = self.estimate(conn, query, params)
        if guess >= EXACT_BELOW:
            return Count(guess, exact=False)
        [(value,)] = self._tuples(conn, query, params)
        return Count(int(value), exact=True)

    def table_rows(self, conn: Conn) -> int:
        rows = self._tuples(conn, self._q["table_estimate"], {"table": self.table})
        return int(rows[0][0]) if rows and rows[0][0] is not None else -1

    # -- pages --------------------------------------------------------------------------

    def overview(self, conn: Conn, *, step_log: bool) -> Overview:
        """Counts by saga and status, the due backlog per step, runners, the chart."""
        counts: dict[str, dict[int, Count]] = {}
        estimated = self.table_rows(conn)
        exact = 0 <= estimated < SMALL_TABLE
        if exact:
            for name, status, n in self._tuples(conn, self._q["count_by_status"], {}):
                counts.setdefault(name, {})[int(status)] = Count(int(n), True)
        else:
            running = dict(self._tuples(conn, self._q["running_counts"], {}))
            for (name,) in self._tuples(conn, self._q["saga_names"], {}):
                per = counts.setdefault(name, {})
                for status in (0, 2, 3, 4):
                    per[status] = self.count(conn, self._q["count_one_status"],
                                             {"name": name, "status": status})
                per[1] = Count(int(running.get(name, 0)), True)
        due = self._dicts(conn, self._q["due_steps"], {})
        [(now,)] = self._tuples(conn, self._q["now"], {})
        for row in due:
            row["count"] = self.count(conn, self._q["count_due"],
                                      {"name": row["name"], "step": row["step"], "now": now})
        runners = self._dicts(conn, self._q["list_runners"], {})
        query = self._q["steps_per_minute" if step_log else "finished_per_minute"]
        minutes = dict(self._tuples(conn, query, {}))
        per_minute = [int(minutes.get(ago, 0)) for ago in range(59, -1, -1)]
        return Overview(counts, due, runners, per_minute, step_log, exact)

    def runners(self, conn: Conn) -> list[Row]:
        return self._dicts(conn, self._q["list_runners"], {})

    def instance(self, conn: Conn, id: int) -> Row | None:
        rows = self._dicts(conn, self._q["get_by_id"], {"id": id})
        return rows[0] if rows else None

    def instances(self, conn: Conn, filters: Filters, limit: int,
                  before: tuple[datetime, int] | None = None) -> list[Row]:
        """Up to *limit* instances, the latest change first, older than *before*."""
        fragments, params = filters.fragments()
        if before is not None:
            fragments.append("filter_before")
            params.update(before_at=before[0], before_id=before[1])
        return self._dicts(conn, self._where("list_instances", fragments),
                           {**params, "limit": limit})

    def matching(self, conn: Conn, filters: Filters, action: str | None = None) -> Count:
        """How many instances *filters* selects (those *action* applies to, if given)."""
        fragments, params = filters.fragments()
        if action is not None:
            fragments.append(_ELIGIBLE[action])
        return self.count(conn, self._where("count_instances", fragments), params)

    # -- actions ------------------------------------------------------------------------

    def bulk(self, conn: Conn, action: str, filters: Filters, *,
             batch: int = BULK_BATCH, most: int = BULK_MAX) -> int:
        """Retry or cancel what *filters* selects, *batch* rows per statement (each its
        own transaction if *conn* autocommits), at most *most*; return how many."""
        fragments, params = filters.fragments()
        fragments.append(_ELIGIBLE[action])
        query = self._where(f"bulk_{action}", fragments)
        done = 0
        while done < most:
            [(changed, _)] = self._tuples(conn, query, {
                **params, "batch": min(batch, most - done), "channel": self.channel,
                "done_channel": self.done_channel})
            done += int(changed)
            if not changed:  # what is left is locked by others, or nothing is
                break
        return done


_ELIGIBLE: Final = {"retry": "filter_retryable", "cancel": "filter_cancellable"}
ACTIONS: Final = tuple(_ELIGIBLE)
