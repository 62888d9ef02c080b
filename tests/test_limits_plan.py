"""A claim under a per-key limit does not walk the rows waiting on a saturated key.

100,000 due rows wait on one key whose only slot is taken. `claim_limited` is a
function, so EXPLAIN cannot show its inner plans; but buffer counts are kept for the
whole of a node's execution, function internals included: the buffers one claim touches
say how much of the backlog it read (walking it would take thousands of pages).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from saga import Saga
from tests.helpers import Db

WAITING = 100_000
MOST_BUFFERS = 200  # pages one claim may touch (the backlog's rows fill ~2,000)


@pytest.fixture
def saturated(make_saga: Callable[..., Saga], db: Db) -> Saga:
    s = make_saga("plan")

    @s.step
    def one(n: int) -> None: ...

    s.limit(per_key=1)
    db.execute(
        "INSERT INTO {s}.instance (name, instance_id, step, input, key, status, limited,"
        "                          runner_id, run_after)"
        " SELECT 'plan', 'i' || n, 'one', '1', 'big', CASE WHEN n = 1 THEN 1 ELSE 0 END,"
        "        n = 1, CASE WHEN n = 1 THEN 'r' END,"
        "        now() - interval '1 hour' + n * interval '1 ms'"
        f"  FROM generate_series(1, {WAITING}) AS n")
    db.execute("ANALYZE {s}.instance")
    return s


def buffers(plan: dict[str, Any]) -> int:
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def explain_claim(saga: Saga, db: Db, after: str | None) -> tuple[int, list[Any]]:
    """The buffers one claim of up to 8 rows touched, and the instances it claimed
    (rolled back: each call sees the same table). With generic plans, as a worker
    thread's connection has them (the function's statements are planned once)."""
    spec = saga.spec()
    with db.conn.transaction(force_rollback=True):
        db.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        [(plan,)] = db.rows(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM {s}.claim_limited("
            "'plan', 'me', ARRAY['one'], 8, %s::jsonb, %s)", spec.limits_json, after)
        got = db.rows("SELECT instance_id FROM {s}.instance WHERE runner_id = 'me'")
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]
    return buffers(top["Plan"]) + buffers(top.get("Planning", {})), got


@pytest.mark.parametrize("after", [None, "big", "m"])
def test_a_saturated_key_costs_a_claim_a_few_pages(saturated: Saga, db: Db,
                                                   after: str | None) -> None:
    for _ in range(6):  # warm, and past the 5 custom plans after which a generic one may do
        explain_claim(saturated, db, after)
    used, got = explain_claim(saturated, db, after)
    assert got == []  # the one key is full: nothing to claim
    assert used < MOST_BUFFERS, used


def test_other_keys_are_claimed_past_the_backlog(saturated: Saga, db: Db) -> None:
    db.execute("INSERT INTO {s}.instance (name, instance_id, step, input, key, run_after)"
               " SELECT 'plan', 'o' || n, 'one', '1', 'k' || n, now() - interval '2 hours'"
               "   FROM generate_series(1, 5) AS n")
    for _ in range(6):
        explain_claim(saturated, db, None)
    used, got = explain_claim(saturated, db, None)
    assert sorted(i for (i,) in got) == [f"o{n}" for n in range(1, 6)]
    assert used < MOST_BUFFERS, used
