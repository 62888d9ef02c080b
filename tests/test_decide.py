"""`saga.outcomes.decide`: what a step did -> which transition the worker writes.

A table of cases at the real defaults (max_attempts 25, backoff from about 1 s, doubling,
capped at 1 h, jittered by up to a quarter), and the one backoff function.
"""

from __future__ import annotations

import pytest

from saga import Saga
from saga.outcomes import (
    Abandoned,
    Complete,
    Continue,
    Continued,
    Crashed,
    Fail,
    Finished,
    Rejected,
    Result,
    Retry,
    Transition,
    decide,
    exhausted,
)
from saga.spec import BACKOFF_BASE, BACKOFF_MAX, MAX_ATTEMPTS, RetryPolicy, backoff

DEFAULTS = RetryPolicy()
NO_JITTER = lambda: 0.0  # noqa: E731  (rand() at its low end: the full delay)
MOST_JITTER = lambda: 0.999999  # noqa: E731  (the shortest delay jitter allows)

CASES: list[tuple[str, Result, int, Transition]] = [
    ("continuation at once", Continued("b", '{"n": 1}', None, 0.0), 1,
     Continue("b", '{"n": 1}', None, 0.0)),
    ("delayed continuation with a state", Continued("b", "1", '"s"', 30.0), 3,
     Continue("b", "1", '"s"', 30.0)),
    ("final value", Finished('"done"'), 1, Complete('"done"')),
    ("None keeps the state", Finished(None), 7, Complete(None)),
    ("SagaError on the first attempt", Rejected("no funds"), 1, Fail("no funds")),
    ("bad outcome", Rejected("cannot be stored"), 24, Fail("cannot be stored")),
    ("first crash", Crashed("Traceback: boom"), 1, Retry("Traceback: boom", 1.0)),
    ("second crash", Crashed("tb"), 2, Retry("tb", 2.0)),
    ("third crash", Crashed("tb"), 3, Retry("tb", 4.0)),
    ("twelfth crash: 2048 s", Crashed("tb"), 12, Retry("tb", 2048.0)),
    ("thirteenth crash: capped at 1 h", Crashed("tb"), 13, Retry("tb", 3600.0)),
    ("24th crash: still capped", Crashed("tb"), 24, Retry("tb", 3600.0)),
    ("25th crash: the dead letter", Crashed("tb"), 25, Fail("tb")),
    ("claimed beyond the limit", Abandoned("pay"), 26, Fail(
        "step 'pay' was claimed 25 times without finishing (max_attempts=25): "
        "its runner died each time")),
]


@pytest.mark.parametrize(("result", "attempt", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(result: Result, attempt: int, expected: Transition) -> None:
    assert decide(result, attempt, DEFAULTS, NO_JITTER) == expected


@pytest.mark.parametrize("attempt", [1, 2, 5, 12, 13, 24])
def test_a_retry_is_jittered_by_at_most_a_quarter(attempt: int) -> None:
    full = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
    shortest = decide(Crashed("tb"), attempt, DEFAULTS, MOST_JITTER)
    assert isinstance(shortest, Retry)
    assert 0.75 * full <= shortest.delay < 0.75 * full + 1e-3
    delays = set()
    for _ in range(50):  # the real random source: always in range, not always the same
        t = decide(Crashed("tb"), attempt, DEFAULTS)
        assert isinstance(t, Retry)
        assert 0.75 * full <= t.delay <= full
        delays.add(t.delay)
    assert len(delays) > 1


def test_the_defaults_are_the_documented_ones() -> None:
    assert (MAX_ATTEMPTS, BACKOFF_BASE, BACKOFF_MAX) == (25, 1.0, 3600.0)
    policy = Saga("d", "dbname=x").policy
    assert policy == DEFAULTS


def test_a_policy_of_its_own() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base=0.5, backoff_max=1.5)
    assert decide(Crashed("tb"), 2, policy, NO_JITTER) == Retry("tb", 1.0)
    assert decide(Crashed("tb"), 3, policy, NO_JITTER) == Fail("tb")
    assert (exhausted(3, policy), exhausted(4, policy)) == (False, True)


def test_backoff_caps_huge_attempt_numbers() -> None:
    assert backoff(10_000, 1.0, 60.0, NO_JITTER) == 60.0
    assert backoff(1, 0.1, 25.6, NO_JITTER) == 0.1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": True}, "max_attempts"),
    ({"backoff_base": 0}, "backoff_base"),
    ({"backoff_base": 10.0, "backoff_max": 1.0}, "backoff_base <= backoff_max"),
])
def test_a_bad_policy_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
