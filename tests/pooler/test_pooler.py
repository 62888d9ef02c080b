"""Pooler mode through a real PgBouncer in transaction pooling (3 server connections for
many more clients): the API under load, wait() without LISTEN, cancel, retry,
start_many, drains, and migrations from two processes at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from saga import ConcurrencyException, Saga, SagaError, SagaNotFound, Status
from saga.pgbouncer import PgBouncer
from saga.sqlfiles import migrations
from tests.helpers import Db

MakeSaga = Callable[..., Saga]


def chain(s: Saga) -> None:
    """Steps `one` -> `two` (done), and `picky`, which fails for good on "bad"."""

    @s.step
    def one(input: int) -> object:
        return two(input + 1)

    @s.step
    def two(input: int) -> int:
        return input * 10

    @s.step
    def picky(input: str) -> None:
        if input == "bad":
            raise SagaError("bad input")


def hammer(s: Saga, threads: int, rounds: int) -> list[BaseException]:
    """start, get, call and get_state from *threads* threads; return what they raised."""
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(rounds):
                instance = f"h-{t}-{i}"
                s.start(instance, "one", i)
                assert s.get(instance).status is Status.PENDING
                s.call(instance, "two", i)
                assert s.get_state(instance) is None
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=work, args=(t,), name=f"hammer-{t}")
               for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    return errors


def test_many_clients_share_three_server_connections(
        make_saga: MakeSaga, bouncer: PgBouncer, db: Db) -> None:
    s = make_saga()
    chain(s)
    s.ensure_pool_size(8)
    assert hammer(s, threads=8, rounds=25) == []
    assert db.one("SELECT count(*) FROM {s}.instance") == 200
    assert bouncer.server_connections() <= bouncer.pool_size
    with s.pool.connection() as conn:
        assert conn.prepare_threshold is None


def test_without_pooler_mode_prepared_statements_break(
        bouncer: PgBouncer, schema: str) -> None:
    """The control: the same load with psycopg's prepared statements fails through
    PgBouncer 1.18 in transaction mode, which is what pooler mode is for."""
    with Saga("test", bouncer.dsn, schema=schema, pooler=True) as setup:
        setup.init_db()
    with Saga("test", bouncer.dsn, schema=schema) as s:
        chain(s)
        s.ensure_pool_size(8)
        errors = hammer(s, threads=8, rounds=25)
    assert errors, "prepared statements worked through transaction pooling"
    assert all(isinstance(e, psycopg.Error) and "prepared statement" in str(e)
               for e in errors), errors


def test_wait_polls_instead_of_listening(make_saga: MakeSaga, db: Db) -> None:
    s = make_saga()
    chain(s)
    s.start("w", "one", 1)
    later = threading.Timer(0.3, lambda: s.run(workers=1, drain=True))
    later.start()
    began = time.monotonic()
    record = s.wait("w", timeout=10)
    later.join()
    assert record.status is Status.COMPLETE
    assert record.state == 20
    assert time.monotonic() - began < 3.0
    # No LISTEN ever ran: it would be the last query of a server connection.
    assert db.rows("SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%'") == []


def test_wait_times_out_and_knows_unknown_instances(make_saga: MakeSaga) -> None:
    s = make_saga()
    chain(s)
    s.start("never", "one", 1, delay=3600)
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="PENDING"):
        s.wait("never", timeout=0.4)
    assert 0.4 <= time.monotonic() - began < 2.0
    with pytest.raises(SagaNotFound):
        s.wait("nobody", timeout=1)


def test_start_many_then_drain_through_the_pooler(make_saga: MakeSaga, db: Db) -> None:
    s = make_saga()
    chain(s)
    assert s.start_many("one", {f"m-{i}": i for i in range(300)}) == []
    assert s.start_many("one", [("m-1", 0), ("new", 5)]) == ["m-1"]
    stats = s.run(workers=4, drain=True)
    assert stats.completed == 301
    assert db.statuses() == {Status.COMPLETE: 301}
    assert s.get_state("m-7") == 80


def test_cancel_and_retry_through_the_pooler(make_saga: MakeSaga) -> None:
    s = make_saga()
    chain(s)
    s.start("c", "one", 1, delay=3600)
    s.cancel("c")
    assert s.get("c").status is Status.CANCELLED
    with pytest.raises(ConcurrencyException):
        s.cancel("c")
    s.start("r", "picky", "bad")
    s.run(workers=1, drain=True)
    assert s.get("r").status is Status.ERROR
    with pytest.raises(ConcurrencyException):
        s.call("r", "picky", "good")
    s.retry("r")
    assert s.get("r").status is Status.PENDING
    s.run(workers=1, drain=True)
    assert s.get("r").status is Status.ERROR  # same input, same verdict
    assert s.get("r").attempts == 1


MIGRATE = """
import sys, time
from saga import Saga
dsn, schema, at = sys.argv[1], sys.argv[2], float(sys.argv[3])
with Saga("m", dsn, schema=schema, pooler=True) as s:
    s.pool.wait(timeout=10)
    time.sleep(max(0.0, at - time.time()))  # both processes start migrating at once
    print(",".join(s.init_db()))
"""


@pytest.mark.parametrize("how", ["init_db", "cli"])
def test_two_processes_migrate_at_once(bouncer: PgBouncer, schema: str, db: Db,
                                       how: str) -> None:
    at = time.time() + 1.5
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    if how == "init_db":
        commands = [[sys.executable, "-c", MIGRATE, bouncer.dsn, schema, str(at)]] * 2
    else:
        commands = [[sys.executable, "-m", "saga", "migrate", "--dsn", bouncer.dsn,
                     "--schema", schema]] * 2
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                              text=True) for c in commands]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    names = [name for _, name, _ in migrations()]
    recorded = [n for (n,) in db.rows("SELECT name FROM {s}.migration ORDER BY version")]
    assert recorded == names
    if how == "init_db":
        applied = [n for out, _ in outputs for n in out.strip().split(",") if n]
        assert sorted(applied) == names  # each once, by one process or the other
    # No session-level advisory lock stayed behind on PgBouncer's server connections.
    assert db.rows("SELECT pid FROM pg_locks WHERE locktype = 'advisory'") == []
