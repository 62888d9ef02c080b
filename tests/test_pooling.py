"""Pooler mode's options without a pooler: argument checks, prepared statements off, no
session settings on worker threads' connections, wait()'s polling pauses, the worker's
--pooler/--no-listen/--listen-dsn flags."""

from __future__ import annotations

import pytest
from psycopg_pool import ConnectionPool

from saga import Saga, Status
from saga.loop import WorkLoop
from saga.pooling import WAIT_POLL_FIRST, WAIT_POLL_MAX, next_wait_pause, prepares
from saga.runner import POLL_INTERVAL, Runner
from saga.worker import parse_args
from tests.helpers import Db


def test_pooler_arguments_are_checked(dsn: str) -> None:
    with pytest.raises(TypeError, match="pooler must be True or False"):
        Saga("x", dsn, pooler="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prepared_statements must be"):
        Saga("x", dsn, prepared_statements=1)  # type: ignore[arg-type]


def test_prepared_statements_follow_pooler_mode_unless_told() -> None:
    assert prepares(False, None) is True
    assert prepares(True, None) is False
    assert prepares(True, True) is True
    assert prepares(False, False) is False


def test_pooler_mode_connections_never_prepare(dsn: str, schema: str, db: Db) -> None:
    with Saga("p", dsn, schema=schema, pooler=True) as s:
        s.init_db()

        @s.step
        def only(input: int) -> None:
            pass

        for i in range(10):  # past psycopg's prepare_threshold (5)
            s.start(f"i{i}", only, i)
            s.get(f"i{i}")
        with s.pool.connection() as conn:
            assert conn.prepare_threshold is None
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
        assert s.run(workers=1, drain=True).completed == 10
        assert s.wait("i3", timeout=5).status is Status.COMPLETE


def test_a_given_pool_that_prepares_is_refused_in_pooler_mode(dsn: str, schema: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=1, open=False) as pool:
        with pytest.raises(ValueError, match="prepare_threshold"):
            Saga("x", pool=pool, schema=schema, pooler=True)
        Saga("x", pool=pool, schema=schema, pooler=True, prepared_statements=True)
    kwargs = {"prepare_threshold": None}
    with ConnectionPool(dsn, min_size=1, max_size=1, open=False, kwargs=kwargs) as pool:
        assert Saga("x", pool=pool, schema=schema, pooler=True).pooler


def test_use_pooler_reopens_the_saga_s_own_pool(dsn: str, schema: str) -> None:
    with Saga("x", dsn, schema=schema) as s:
        before = s.pool
        s.use_pooler()
        assert s.pooler
        assert s.pool is not before
        assert before.closed
        with s.pool.connection() as conn:
            assert conn.prepare_threshold is None


def test_pooler_mode_worker_threads_keep_no_session_settings(dsn: str, schema: str,
                                                            other_schema: str) -> None:
    """Through a transaction pooler a session setting would stay on a server connection
    that other clients get next: a worker thread's connection keeps the server's plan
    mode in pooler mode (and plans generically otherwise), and its lane is in pooler
    mode, which makes the heartbeat SET its statement timeout LOCAL."""
    with Saga("p", dsn, schema=schema, pooler=True) as pooled, \
            Saga("d", dsn, schema=other_schema) as direct:
        for s in (pooled, direct):
            s.init_db()

            @s.step
            def only(input: int) -> None:
                pass

        settings: dict[str, str] = {}
        for s in (pooled, direct):
            runner = Runner([s], workers=1)
            runner._crew.lanes[:] = runner._make_lanes()
            [lane] = runner._crew.lanes
            assert lane.pooler is s.pooler
            assert lane.heartbeat.pooler is s.pooler
            [lent] = WorkLoop(runner._crew)._lent.values()
            try:
                row = lent.get().execute("SELECT current_setting('plan_cache_mode')").fetchone()
            finally:
                lent.release()
            assert row is not None
            settings[s.name] = row[0]
        assert settings == {"p": "auto", "d": "force_generic_plan"}


def test_wait_pauses_back_off_with_jitter_to_a_cap() -> None:
    pauses: list[float] = []
    pause = None
    for _ in range(30):
        pause = next_wait_pause(pause)
        pauses.append(pause)
    assert WAIT_POLL_FIRST * 0.8 <= pauses[0] <= WAIT_POLL_FIRST * 1.2
    assert max(pauses) <= WAIT_POLL_MAX * 1.2
    assert min(pauses[-5:]) >= WAIT_POLL_MAX * 0.8
    assert len(set(pauses)) > 20  # jittered


def test_poll_interval_defaults(dsn: str, schema: str) -> None:
    with Saga("d", dsn, schema=schema) as direct, \
            Saga("q", dsn, schema=schema, pooler=True) as pooled:
        def only(input: object) -> None:
            pass

        for s in (direct, pooled):
            s.step(only)
        assert Runner([direct]).poll_interval == POLL_INTERVAL
        assert Runner([direct], listen=False).poll_interval == 0.5
        assert Runner([pooled]).poll_interval == 0.5
        assert Runner([pooled], listen_dsn=dsn).poll_interval == POLL_INTERVAL


def test_worker_flags() -> None:
    args = parse_args(["a:b", "--pooler", "--listen-dsn", "host=db"])
    assert (args.pooler, args.listen, args.listen_dsn, args.poll_interval) == (
        True, None, "host=db", None)
    assert parse_args(["a:b", "--no-listen"]).listen is False
    with pytest.raises(SystemExit):
        parse_args(["a:b", "--no-listen", "--listen-dsn", "host=db"])
    with pytest.raises(SystemExit):
        parse_args(["a:b", "--poll-interval", "0"])


def test_pooler_mode_gauges_keep_no_session_statement_timeout(dsn: str, schema: str) -> None:
    """The metrics' database gauges bound their scrape with a SET LOCAL in pooler mode,
    and leave the connection's session as the server made it."""
    from saga.telemetry.gauges import Gauges

    with Saga("p", dsn, schema=schema, pooler=True) as s:
        s.init_db()

        @s.step
        def only(input: int) -> None:
            pass

        s.start("a", only, 1)
        gauges = Gauges([s])
        try:
            reading = gauges.read()
            assert [(b.step, b.due) for b in reading.backlog] == [("only", 1)]
            [source] = gauges._sources.values()
            assert source._conn is not None
            row = source._conn.execute("SELECT current_setting('statement_timeout')").fetchone()
            assert row == ("0",)
        finally:
            gauges.close()
