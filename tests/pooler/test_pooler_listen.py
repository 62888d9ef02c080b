"""Wake-ups behind PgBouncer: polling in pooler mode, LISTEN on a direct `listen_dsn`,
and the self-check that catches a LISTEN through transaction pooling."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from saga import Saga, Status
from saga.pooling import POOLER_POLL_INTERVAL
from saga.runner import Runner
from tests.helpers import FAR, Db, running, wait_until

MakeSaga = Callable[..., Saga]


def quick(s: Saga) -> None:
    @s.step
    def only(input: int) -> int:
        return input + 1


def deaf_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == "listen_deaf"]


def time_to_complete(s: Saga, instance: str) -> float:
    began = time.monotonic()
    s.start(instance, "only", 1)
    wait_until(lambda: s.get(instance).status is Status.COMPLETE, timeout=10, interval=0.01)
    return time.monotonic() - began


def test_pooler_mode_polls_without_listening(make_saga: MakeSaga, db: Db,
                                             caplog: pytest.LogCaptureFixture) -> None:
    s = make_saga()
    quick(s)
    assert Runner([s]).poll_interval == POOLER_POLL_INTERVAL
    with running(s, db):
        assert time_to_complete(s, "a") < POOLER_POLL_INTERVAL + 1.0
        assert db.listeners() == []
    assert deaf_warnings(caplog) == []


def test_listen_dsn_wakes_workers_behind_the_pooler(make_saga: MakeSaga, db: Db, dsn: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    s = make_saga()
    quick(s)
    with caplog.at_level(logging.DEBUG, logger="saga.listening"), \
            running(s, db, listen_dsn=dsn, poll_interval=FAR):
        wait_until(lambda: any(getattr(r, "action", None) == "listen_check"
                               for r in caplog.records))
        assert len(db.listeners()) == 1  # direct: the LISTEN is seen on the server
        assert max(time_to_complete(s, f"l{i}") for i in range(5)) < 1.0  # not FAR
    assert deaf_warnings(caplog) == []


def test_listen_through_transaction_pooling_warns_once_and_polls(
        make_saga: MakeSaga, db: Db, caplog: pytest.LogCaptureFixture) -> None:
    s = make_saga()
    quick(s)
    with caplog.at_level(logging.WARNING), running(s, db, listen=True, poll_interval=30.0):
        record = wait_until(lambda: deaf_warnings(caplog), timeout=10)[0]
        message = record.getMessage()
        assert "LISTEN does not deliver" in message
        assert "--listen-dsn" in message
        # Started after the warning, it runs within the fallback poll interval, not 30 s.
        assert time_to_complete(s, "after") < POOLER_POLL_INTERVAL + 1.0
        assert time_to_complete(s, "again") < POOLER_POLL_INTERVAL + 1.0
    assert len(deaf_warnings(caplog)) == 1


def test_self_check_passes_on_a_direct_connection(dsn: str, schema: str, db: Db,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with Saga("direct", dsn, schema=schema) as s:
        s.init_db()
        quick(s)
        with caplog.at_level(logging.DEBUG, logger="saga.listening"), \
                running(s, db, poll_interval=FAR):
            wait_until(lambda: any(getattr(r, "action", None) == "listen_check"
                                   for r in caplog.records))
            assert time_to_complete(s, "d") < 1.0
    assert deaf_warnings(caplog) == []


def test_runner_listen_options_are_checked(make_saga: MakeSaga, dsn: str) -> None:
    s = make_saga()
    quick(s)
    with pytest.raises(ValueError, match="listen_dsn"):
        Runner([s], listen=False, listen_dsn=dsn)
    with pytest.raises(ValueError, match="listen_dsn is not a valid"):
        Runner([s], listen_dsn="=bad")
    with pytest.raises(TypeError, match="listen must be"):
        Runner([s], listen="yes")  # type: ignore[arg-type]
    assert Runner([s], listen_dsn=dsn).poll_interval == 2.0  # LISTEN works: the usual
    assert Runner([s], poll_interval=7).poll_interval == 7.0
