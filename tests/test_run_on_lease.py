"""The lease across an undelayed continuation: the step run on is that step's first
attempt, whatever attempt of the step before it the claim was."""

from __future__ import annotations

from saga import Saga, Status
from tests.helpers import Db


def test_a_step_that_succeeds_on_a_retry_runs_its_continuation_on(
    slow_retry_saga: Saga, db: Db
) -> None:
    saga, tries = slow_retry_saga, []

    @saga.step
    def flaky(input: int) -> object:
        tries.append(saga.get("i").attempts)
        if len(tries) == 1:
            raise RuntimeError("once")
        return after(input + 1)

    @saga.step
    def after(input: int) -> object:
        tries.append(saga.get("i").attempts)
        return then(input + 1)

    @saga.step
    def then(input: int) -> str:
        return f"then {input}"

    saga.start("i", flaky, 1)
    saga.run(workers=1, drain=True)
    assert saga.get("i").status is Status.PENDING  # the first attempt failed
    db.make_due("i")
    stats = saga.run(workers=1, drain=True)
    row = saga.get("i")
    # Claim 2 of flaky ran on into after and then: each write was under a lease of
    # attempt 1 of its own step, which the row's attempts agreed with.
    assert (row.status, row.state, row.attempts, row.runner_id) == (Status.COMPLETE, "then 3",
                                                                    1, None)
    assert tries == [1, 2, 1]
    assert (stats.steps, stats.completed, stats.failed) == (3, 1, 0)
