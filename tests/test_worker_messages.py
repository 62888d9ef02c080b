"""What the worker says: one INFO line per finished instance, a DEBUG line per step with
the instance's id, a grace-period warning and a reaper message that name instances;
and a last step's final value checked against the step's return annotation."""

from __future__ import annotations

import logging
import threading

import pytest

from saga import Saga, Status
from saga.logs import ContextFormatter
from saga.runner import Runner
from tests.helpers import Db, wait_until


def messages(caplog: pytest.LogCaptureFixture, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == action]


def test_a_finished_instance_is_one_info_line_and_each_step_a_debug_line(
    saga: Saga, caplog: pytest.LogCaptureFixture
) -> None:
    @saga.step
    def first(input: int) -> object:
        return second(input)

    @saga.step
    def second(input: int) -> None: ...

    saga.start("a", first, 1)
    with caplog.at_level(logging.DEBUG, logger="saga"):
        saga.run(workers=1, drain=True)
    [done] = messages(caplog, "complete")
    assert done.levelno == logging.INFO
    assert done.getMessage() == "instance a complete after step second"
    [step] = messages(caplog, "step_done")
    assert step.levelno == logging.DEBUG
    row_id = saga.get("a").id
    assert step.getMessage().startswith(f"instance a (id {row_id}): step first done in ")
    assert step.getMessage().endswith(", next second")
    text = ContextFormatter("%(message)s").format(done)
    assert text.endswith(f"[saga=test instance=a id={row_id} step=second attempt=1]")


def test_a_final_value_that_does_not_fit_the_return_annotation_is_an_error(
    saga: Saga,
) -> None:
    @saga.step
    def count(input: object) -> int:
        return "many"  # type: ignore[return-value]

    @saga.step
    def fine(input: object) -> int | None:
        return 3

    saga.start("bad", count)
    saga.start("good", fine)
    saga.run(workers=1, drain=True)
    bad = saga.get("bad")
    assert bad.status is Status.ERROR
    assert bad.error is not None
    assert "final state does not fit the return annotation of step 'count'" in bad.error
    assert (saga.get("good").status, saga.get("good").state) == (Status.COMPLETE, 3)


def test_the_grace_warning_names_the_instances_and_steps_still_running(
    saga: Saga, caplog: pytest.LogCaptureFixture
) -> None:
    inside, release = threading.Event(), threading.Event()

    @saga.step
    def slow(input: object) -> None:
        inside.set()
        release.wait(10)

    saga.start("stuck", slow)
    runner = Runner([saga], workers=1, grace=0.2, poll_interval=0.2)
    thread = threading.Thread(target=runner.run, daemon=True)
    with caplog.at_level(logging.WARNING, logger="saga"):
        thread.start()
        assert inside.wait(10)
        runner.stop()
        wait_until(lambda: messages(caplog, "grace_expired"), timeout=10)
        release.set()
        thread.join(10)
    [warning] = messages(caplog, "grace_expired")
    assert "test/stuck in step slow" in warning.getMessage()


def test_the_reaper_says_which_instances_it_recovered(
    saga: Saga, db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    @saga.step
    def work(input: object) -> None: ...

    saga.start("orphan", work)
    db.execute("UPDATE {s}.instance SET status = 1, runner_id = 'vanished', attempts = 1")
    with caplog.at_level(logging.WARNING, logger="saga"):
        saga.run(workers=1, drain=True)
    [reaped] = messages(caplog, "reap")
    assert reaped.getMessage() == (
        "1 instance(s) whose runner stopped during a step are PENDING again: test/orphan")
    assert saga.get("orphan").status is Status.COMPLETE
