"""`Store.claim_or_due` and `Store.apply_and_claim`: a claim with next_due folded in, and
an outcome with the next claim folded in — one statement each."""

from __future__ import annotations

import pytest

from saga.outcomes import Complete, Continue, Fail, Retry, Transition
from saga.store import Claim, Store
from tests.helpers import Db
from tests.store_support import NAME, RUNNER, STEPS, Conn, add, claim_one, conn, store

__all__ = ["conn", "store"]

CLAIM = Claim(RUNNER, NAME, STEPS, 10)


def test_every_fold_is_one_statement() -> None:
    store = Store("saga")
    assert store._folded == {None, "complete", "schedule", "fail"}
    texts = [store._folded_text(q, CLAIM) for q in store._folded]
    assert all(";" not in text for text in texts)


def test_claim_or_due_claims_or_says_when(conn: Conn, store: Store, db: Db) -> None:
    assert store.claim_or_due(conn, CLAIM) == ([], None)  # nothing at all
    add(conn, store, "later", delay=60)
    rows, due_in = store.claim_or_due(conn, CLAIM)
    assert rows == []
    assert due_in is not None
    assert 59 < due_in <= 60
    add(conn, store, "now", input={"n": 1})
    rows, due_in = store.claim_or_due(conn, CLAIM)
    assert [(r.instance, r.step, r.input, r.attempt) for r in rows] == [
        ("now", "reserve", '{"n": 1}', 1)]
    assert due_in is None
    assert db.row("now")["status"] == 1


@pytest.mark.parametrize(("transition", "status"), [
    (Complete('"done"'), 2),
    (Continue("charge", "2", None, 30.0), 0),
    (Retry("boom", 5.0), 0),
    (Fail("for good"), 3),
])
def test_apply_and_claim_writes_the_outcome_and_claims_the_next(
    conn: Conn, store: Store, db: Db, transition: Transition, status: int
) -> None:
    add(conn, store, "a")
    lease = claim_one(conn, store, "a")
    add(conn, store, "b")
    add(conn, store, "c")
    written, (rows, due_in) = store.apply_and_claim(conn, lease, transition, CLAIM)
    assert written == status
    assert db.row("a")["status"] == status
    assert sorted(r.instance for r in rows) == ["b", "c"]  # never "a", even when PENDING again
    assert due_in is None


def test_apply_and_claim_with_nothing_due_gives_the_next_due_time(
    conn: Conn, store: Store
) -> None:
    add(conn, store, "a")
    lease = claim_one(conn, store, "a")
    add(conn, store, "later", delay=30)
    written, (rows, due_in) = store.apply_and_claim(conn, lease, Complete(None), CLAIM)
    assert (written, rows) == (2, [])
    assert due_in is not None
    assert 29 < due_in <= 30


def test_apply_and_claim_claims_even_when_the_lease_is_lost(
    conn: Conn, store: Store, db: Db
) -> None:
    add(conn, store, "a")
    lease = claim_one(conn, store, "a")
    db.steal("a")
    add(conn, store, "b")
    written, (rows, _) = store.apply_and_claim(conn, lease, Complete(None), CLAIM)
    assert written is None
    assert [r.instance for r in rows] == ["b"]
    assert db.row("a")["status"] == 1  # untouched: someone else's now
