"""The claim query keeps using its partial index when the table is large.

A claim that fell back to scanning the table would make every step cost as much as the
backlog is long. The planner decides from statistics, so this looks at the plans of a
table holding a real backlog, for a custom plan (each claim's own values) and for the
generic plan the server may switch to once psycopg has prepared the query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from saga.store import Store
from tests.helpers import Db
from tests.store_support import NAME, RUNNER, STEPS, store  # noqa: F401 (fixture)

PENDING = 100_000  # due rows of the steps the worker serves
FINISHED = 100_000  # COMPLETE rows, which the claim must not wade through
OTHER = 50_000  # due rows of another saga


@pytest.fixture
def backlog(db: Db, store: Store) -> Store:  # noqa: F811
    mine, others = PENDING, PENDING + OTHER
    db.execute(
        "INSERT INTO {s}.instance (name, instance_id, step, input, status, run_after)"
        f" SELECT CASE WHEN n <= {mine} OR n > {others} THEN %s::text ELSE 'other' END,"
        "        'i' || n, CASE WHEN n %% 2 = 0 THEN %s::text ELSE %s::text END, '1',"
        f"       CASE WHEN n > {others} THEN 2 ELSE 0 END,"
        "        now() - interval '1 hour' + n * interval '1 ms'"
        f"  FROM generate_series(1, {others + FINISHED}) AS n",
        NAME, STEPS[0], STEPS[1])
    db.execute("ANALYZE {s}.instance")
    return store


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def uses_due_index(plan: dict[str, Any]) -> bool:
    """True if the due rows are found through instance_due_idx and nothing scans the
    whole table (the claim's outer UPDATE finds its rows by primary key)."""
    scans = [n for n in nodes(plan) if n.get("Relation Name") == "instance"]
    return (any(n.get("Index Name") == "instance_due_idx" for n in scans)
            and not any(n["Node Type"] == "Seq Scan" for n in scans))


def positional(query: str) -> tuple[str, list[str]]:
    """The query with $1, $2, ... for its %(name)s placeholders, and the names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return re.sub(r"%\((\w+)\)s", number, query), names


TYPES = {"runner_id": "text", "name": "text", "steps": "text[]", "limit": "int",
         "now": "timestamptz"}
VALUES = {"runner_id": RUNNER, "name": NAME, "steps": STEPS, "limit": 1, "now": None}


@pytest.mark.parametrize("query", ["claim_due", "next_due"])
@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
def test_claims_use_the_due_index_at_a_large_backlog(
    db: Db, backlog: Store, query: str, mode: str
) -> None:
    text, names = positional(backlog.fixed_query(query, NAME, STEPS, 1))  # as the worker runs it
    types = f"({', '.join(TYPES[n] for n in names)})" if names else ""
    conn = db.conn
    with conn.transaction(force_rollback=True):  # EXPLAIN of an UPDATE plans it only
        conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        conn.execute(f"PREPARE probe {types} AS {text}")
        args = sql.SQL(", ").join(sql.Literal(VALUES[n]) for n in names)
        execute = (sql.SQL("EXECUTE probe ({})").format(args) if names
                   else sql.SQL("EXECUTE probe"))
        [(plan,)] = conn.execute(
            sql.SQL("EXPLAIN (FORMAT JSON) {}").format(execute)).fetchall()
        conn.execute("DEALLOCATE probe")
    tree = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    assert uses_due_index(tree), json.dumps(tree, indent=1)


def test_the_probe_can_tell_a_sequential_scan(db: Db, backlog: Store) -> None:
    """The check above is not vacuous: with index scans off, it sees the difference."""
    conn = db.conn
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        [(plan,)] = conn.execute(
            f"EXPLAIN (FORMAT JSON) {backlog.fixed_query('claim_due', NAME, STEPS, 1)}",
            VALUES).fetchall()
    assert not uses_due_index(plan[0]["Plan"])


def test_a_backlog_of_an_unserved_step_costs_a_claim_nothing(db: Db, store: Store) -> None:  # noqa: F811
    """Rows of a step no worker serves (a deploy removed it), due before everything else,
    are never visited: the claim reads a handful of pages, not the backlog."""
    db.execute(
        "INSERT INTO {s}.instance (name, instance_id, step, input, run_after)"
        " SELECT %s::text, 'gone' || n, 'removed_step', '1',"
        "        now() - interval '2 hours' + n * interval '1 ms'"
        "   FROM generate_series(1, 100000) AS n", NAME)
    db.execute("INSERT INTO {s}.instance (name, instance_id, step, input, run_after)"
               " VALUES (%s, 'mine', %s, '1', now() - interval '1 minute')", NAME, STEPS[0])
    db.execute("ANALYZE {s}.instance")
    conn = db.conn
    with conn.transaction(force_rollback=True):
        [(plan,)] = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                                 f"{store.fixed_query('claim_due', NAME, STEPS, 1)}",
                                 VALUES).fetchall()
    top = plan[0]["Plan"]
    assert top["Actual Rows"] == 1
    pages = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    assert pages < 100, json.dumps(top, indent=1)


def test_the_claim_and_next_due_settle_on_a_generic_plan(dsn: str, backlog: Store) -> None:
    """Once psycopg has prepared them, the server plans them no more: it keeps a generic
    plan (planning a claim took as long as running it). With the limit and the steps as
    parameters it never did at a backlog: the generic plan looked dearer."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for limit in (1, 10):
            for _ in range(20):  # psycopg prepares after 5, then the server tries 5 custom
                assert len(backlog.claim(conn, RUNNER, NAME, STEPS, limit)) == limit
        for _ in range(20):
            assert backlog.next_due(conn, NAME, STEPS) is not None
        found = conn.execute("SELECT statement LIKE 'UPDATE%%', generic_plans, custom_plans"
                             "  FROM pg_prepared_statements").fetchall()
    assert sorted(claim for claim, _, _ in found) == [False, True, True]  # a claim per limit
    for _, generic, custom in found:
        assert generic >= 5
        assert custom <= 5


def test_fixed_queries_quote_what_they_write_in(store: Store) -> None:  # noqa: F811
    text = store.fixed_query("next_due", "it's 100%", ["a'b", "c%d"])
    assert "'it''s 100%%'" in text
    assert "'{a''b,c%%d}'" in text
    with pytest.raises(ValueError, match="limit must be an integer >= 1, got 0"):
        store.fixed_query("claim_due", NAME, STEPS, 0)


def test_a_claim_planned_on_an_empty_table_finds_its_rows_by_key_later(
    dsn: str, store: Store  # noqa: F811
) -> None:
    """The generic plan outlives the statistics it was made from: made when the table was
    empty, it must not scan the table for the claimed rows once it has grown."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(12):  # prepared and made generic while the table is empty
            assert store.claim(conn, RUNNER, NAME, STEPS, 1) == []
        conn.execute(sql.SQL(
            "INSERT INTO {}.instance (name, instance_id, step, input, run_after)"
            " SELECT %s, 'i' || n, %s, '1', now() - interval '1 hour'"
            "   FROM generate_series(1, 20000) AS n").format(sql.Identifier(store.schema)),
            (NAME, STEPS[0]))
        [(name,)] = conn.execute("SELECT name FROM pg_prepared_statements"
                                 " WHERE statement LIKE 'UPDATE%%'").fetchall()
        with conn.transaction(force_rollback=True):
            [(plan,)] = conn.execute(
                sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {} ({}, NULL)").format(
                    sql.Identifier(name), sql.Literal(RUNNER))).fetchall()
    assert uses_due_index(plan[0]["Plan"]), json.dumps(plan, indent=1)
