"""`Store.apply`: each transition written under the lease, as the row then reads; and
nothing written for a lease the runner no longer holds.

The worker usually writes an outcome folded with its next claim (`apply_and_claim`);
`apply` is the path of a runner serving several sagas, of buffered claims, of a
stopping runner, and of every `conn` step: pinned here on its own.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from saga.outcomes import Complete, Continue, Fail, Retry, Transition
from saga.store import Lease, Store
from tests.helpers import Db
from tests.store_support import RUNNER, Conn, add, claim_one, conn, store

__all__ = ["conn", "store"]

# transition, run_on -> the row: status, step, attempts, runner_id, error, state, and the
# seconds from updated_at to run_after while PENDING
Expected = tuple[int, str, int, str | None, str | None, object, float | None]
CASES: list[tuple[str, Transition, bool, Expected]] = [
    ("continue at once", Continue("charge", '"next"', '{"s": 2}', 0.0), True,
     (1, "charge", 1, RUNNER, None, {"s": 2}, None)),
    ("continue at once, stopping", Continue("charge", '"next"', None, 0.0), False,
     (0, "charge", 0, None, None, {"s": 1}, 0.0)),
    ("continue later", Continue("charge", '"next"', None, 45.0), True,
     (0, "charge", 0, None, None, {"s": 1}, 45.0)),
    ("complete", Complete('"done"'), True, (2, "reserve", 1, None, None, "done", None)),
    ("retry", Retry("Traceback: boom", 12.5), True,
     (0, "reserve", 1, None, "Traceback: boom", {"s": 1}, 12.5)),
    ("fail", Fail("no funds"), True, (3, "reserve", 1, None, "no funds", {"s": 1}, None)),
]


def stale_leases(lease: Lease) -> list[Lease]:
    return [lease._replace(runner_id="someone-else"), lease._replace(attempt=lease.attempt + 1),
            lease._replace(attempt=lease.attempt - 1), lease._replace(id=lease.id + 1000)]


@pytest.mark.parametrize(("transition", "run_on", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_apply_writes_each_transition_under_the_lease(
    conn: Conn, store: Store, db: Db, transition: Transition, run_on: bool,
    expected: Expected,
) -> None:
    add(conn, store, "a", state={"s": 1})
    lease = claim_one(conn, store, "a")
    before = db.row("a")
    for stale in stale_leases(lease):
        assert store.apply(conn, stale, transition, run_on=run_on) is None
    assert db.row("a") == before  # a lost lease changes nothing
    status = store.apply(conn, lease, transition, run_on=run_on)
    r = db.row("a")
    wait = None if r["status"] in (1, 2, 3) else r["run_after"] - r["updated_at"]
    *columns, seconds = expected
    assert (status, r["status"], r["step"], r["attempts"], r["runner_id"], r["error"],
            r["state"], wait) == (expected[0], *columns,
                                  None if seconds is None else timedelta(seconds=seconds))
    if status != 1:  # the row left this runner: the lease is spent
        assert store.apply(conn, lease, transition, run_on=run_on) is None
