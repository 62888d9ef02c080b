"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll *predicate* until it returns something truthy, and return that.

    Fail the test after *timeout* seconds. This is the one place a test waits on a clock.
    """
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            pytest.fail(f"not true within {timeout}s: {predicate!r}")
        time.sleep(interval)
    return result
