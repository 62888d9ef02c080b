"""Step observers (`saga.observe`): told of each attempt's start and end, never in the way."""

from __future__ import annotations

import logging
import threading

import pytest

from saga import Saga, SagaError, Status, StepEvent
from saga.runner import Runner


class Recorder:
    """An observer that keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, StepEvent]] = []
        self._lock = threading.Lock()

    def step_started(self, event: StepEvent) -> None:
        with self._lock:
            self.events.append(("started", event))

    def step_finished(self, event: StepEvent) -> None:
        with self._lock:
            self.events.append(("finished", event))


def test_an_observer_sees_each_attempt_start_and_end(saga: Saga) -> None:
    @saga.step
    def first(input: int) -> object:
        return second(input + 1)

    @saga.step
    def second(input: int) -> str:
        return "done"

    @saga.step
    def refuse(input: object) -> None:
        raise SagaError("no")

    saga.start("a", first, 1)
    saga.start("b", refuse)
    recorder = Recorder()
    stats = saga.run(workers=1, drain=True, observers=[recorder])
    assert stats.steps == 3
    by_instance: dict[str, list[tuple[str, str, str | None]]] = {}
    for kind, e in recorder.events:
        by_instance.setdefault(e.instance, []).append((kind, e.step, e.outcome))
        assert (e.saga, e.runner != "", e.attempt) == ("test", True, 1)
        assert (e.duration is None) == (kind == "started")
    assert by_instance["a"] == [("started", "first", None), ("finished", "first", "continued"),
                                ("started", "second", None), ("finished", "second", "complete")]
    assert by_instance["b"] == [("started", "refuse", None), ("finished", "refuse", "error")]
    [failure] = [e for kind, e in recorder.events if e.outcome == "error"]
    assert failure.error == "no"
    assert failure.id == saga.get("b").id
    with pytest.raises(AttributeError):
        failure.outcome = "complete"  # type: ignore[misc]  # frozen


def test_a_failing_observer_is_logged_and_ignored(
    saga: Saga, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def step_started(self, event: StepEvent) -> None:
            raise RuntimeError("observer bug")

        def step_finished(self, event: StepEvent) -> None:
            raise RuntimeError("observer bug")

    @saga.step
    def work(input: object) -> None: ...

    saga.start("x", work)
    with caplog.at_level(logging.ERROR, logger="saga.observe"):
        saga.run(workers=1, drain=True, observers=[Broken()])
    assert saga.get("x").status is Status.COMPLETE
    assert sum("observer bug" in (r.exc_text or "") for r in caplog.records) == 2


def test_an_object_that_is_no_observer_is_refused(saga: Saga) -> None:
    @saga.step
    def work(input: object) -> None: ...

    with pytest.raises(TypeError, match="step_started"):
        Runner([saga], observers=[object()])  # type: ignore[list-item]
