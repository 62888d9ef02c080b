"""`saga.lane.Wakeup`: wake at most the threads asked for, never keep a wake-up for a
busy thread, and never let a thread sleep through one that came while it looked; and
the worker thread's own connection (`saga.loop.WorkLoop`)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from saga import Saga, Status
from saga.lane import Wakeup
from saga.loop import WorkLoop
from saga.runner import Runner
from tests.helpers import wait_until


def sleepers(wakeup: Wakeup, n: int, timeout: float) -> tuple[list[threading.Thread],
                                                              list[float]]:
    woke: list[float] = []
    lock = threading.Lock()

    def sleep() -> None:
        token = wakeup.token()
        began = time.monotonic()
        wakeup.wait(timeout, token)
        with lock:
            woke.append(time.monotonic() - began)

    threads = [threading.Thread(target=sleep, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    wait_until(lambda: wakeup.idle == n, timeout=5)
    return threads, woke


def test_one_notify_wakes_one_idle_thread() -> None:
    wakeup = Wakeup()
    threads, woke = sleepers(wakeup, 4, timeout=1.0)
    wakeup.notify()
    wait_until(lambda: len(woke) == 1, timeout=5)
    assert woke[0] < 0.5
    for t in threads:
        t.join(5)
    assert sum(w < 0.5 for w in woke) == 1  # the three others slept until their timeout


def test_notify_n_wakes_n() -> None:
    wakeup = Wakeup()
    threads, woke = sleepers(wakeup, 3, timeout=2.0)
    wakeup.notify(2)
    wait_until(lambda: len(woke) == 2, timeout=5)
    assert wakeup.idle == 1
    wakeup.notify(3)  # more than are asleep: the rest are simply not needed
    for t in threads:
        t.join(5)
    assert len(woke) == 3


def test_a_wake_up_while_looking_is_not_slept_through() -> None:
    wakeup = Wakeup()
    token = wakeup.token()  # about to claim
    wakeup.notify()  # the claim may have missed what this announces
    began = time.monotonic()
    wakeup.wait(5.0, token)
    assert time.monotonic() - began < 0.5


def test_a_wake_up_while_every_thread_is_busy_is_not_kept() -> None:
    wakeup = Wakeup()
    wakeup.notify(8)  # nobody asleep, nobody looking
    token = wakeup.token()  # a thread that looks afterwards sees the work itself
    began = time.monotonic()
    wakeup.wait(0.3, token)
    assert time.monotonic() - began >= 0.25


def test_a_worker_threads_connection_plans_generically_and_only_while_it_holds_it(
    saga: Saga,
) -> None:
    seen: list[str] = []

    @saga.step
    def look(input: object, *, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SELECT current_setting('plan_cache_mode')").fetchone()
        assert row is not None
        seen.append(row[0])

    saga.start("x", look)
    runner = Runner([saga], workers=1)
    crew = runner._crew
    crew.lanes[:] = runner._make_lanes()
    loop = WorkLoop(crew, drain=True)
    [lent] = loop._lent.values()
    setting = lent.get().execute("SELECT current_setting('plan_cache_mode')").fetchone()
    assert setting == ("force_generic_plan",)
    with crew.lanes[0].pool.connection() as conn, conn.transaction():
        crew.lanes[0].heartbeat.register(conn)
    loop.run()  # drains, then gives its connection back
    assert seen == ["auto"]  # a conn step's own statements plan as the server would
    with saga.pool.connection() as conn:
        assert conn.execute("SELECT current_setting('plan_cache_mode')").fetchone() == ("auto",)
    assert saga.get("x").status is Status.COMPLETE
