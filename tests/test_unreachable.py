"""A database that cannot be used: a DSN that cannot work fails at `Saga(...)`; a server
that refuses, or goes away, fails a call within `connect_timeout` with
`DatabaseUnavailable`, never after the pool's 30 s, and never showing the password."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from saga import DatabaseUnavailable, Saga, SagaException, SagaNotFound
from tests.helpers import poll

SECRET = "s3cret-pw"


def free_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proxy:
    """A TCP forwarder to the test server that can be cut: then it refuses new
    connections and breaks the open ones, as a database host that went down."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.closed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="test-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # cut
                return
            if self.closed:
                client.close()
                return
            host, port = self.upstream
            if host.startswith("/"):  # a Unix socket directory, as the embedded server's
                server = socket.socket(socket.AF_UNIX)
                server.connect(f"{host}/.s.PGSQL.{port}")
            else:
                server = socket.create_connection(self.upstream)
            with self._lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (a close does not)
        self.listener.close()
        with self._lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@pytest.fixture
def proxy(dsn: str) -> Iterator[Proxy]:
    params = conninfo_to_dict(dsn)
    p = Proxy(str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432))
    yield p
    p.cut()


def timed(fn: Any, *args: Any) -> tuple[BaseException, float]:
    """The exception *fn* raises, and how long it took to raise it."""
    started = time.monotonic()
    try:
        fn(*args)
    except Exception as e:
        return e, time.monotonic() - started
    pytest.fail(f"{fn} did not raise")


@pytest.mark.parametrize(
    ("dsn", "pattern"),
    [
        (f"postgresql://postgres:{SECRET}@127.0.0.1:notaport/test", "invalid port 'notaport'"),
        (f"host=127.0.0.1 port=99999 password={SECRET}", "invalid port '99999'"),
        (f"postgresql://postgres:{SECRET}@[::1/x", "not a valid connection string"),
        (f"host=127.0.0.1 password='{SECRET}", "not a valid connection string"),
    ],
)
def test_a_dsn_that_cannot_work_fails_at_saga(dsn: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        Saga("shop", dsn)
    assert SECRET not in str(info.value)


def test_a_server_that_refuses_fails_the_first_call_within_seconds() -> None:
    port = free_port()
    s = Saga("shop", f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/test",
             connect_timeout=2)

    @s.step
    def hello(input: object) -> None:
        pass

    for _ in range(2):  # no pool is left behind: the next call tries again, as fast
        error, took = timed(s.start, "i-1", hello)
        assert isinstance(error, DatabaseUnavailable), error
        assert isinstance(error, SagaException | ConnectionError)
        assert took < 3.0
        assert f"host=127.0.0.1 port={port}" in str(error)
        assert "refused" in str(error)
        assert SECRET not in str(error)
        assert not s.has_pool
    s.close()


def test_a_database_that_goes_away_fails_calls_within_the_timeout(
    dsn: str, schema: str, proxy: Proxy
) -> None:
    through = make_conninfo(dsn, host="127.0.0.1", port=proxy.port)
    with Saga("shop", dsn, schema=schema) as direct:
        direct.init_db()
    s = Saga("shop", through, schema=schema, connect_timeout=1)
    with pytest.raises(SagaNotFound):
        s.get("nobody")  # the pool is open and works
    proxy.cut()

    def unavailable() -> float | None:
        """A call fails within the timeout (one on a connection that broke while in the
        pool may fail with psycopg's own error first: it was already sent)."""
        error, took = timed(s.get, "nobody")
        return took if isinstance(error, DatabaseUnavailable) else None

    took = poll(unavailable, timeout=10)
    assert took is not None, "no call failed with DatabaseUnavailable"
    assert took < 2.5
    s.close()


def test_a_pool_kept_busy_fails_calls_within_the_timeout(dsn: str, schema: str) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=1, open=True) as pool:
        s = Saga("shop", pool=pool, schema=schema, connect_timeout=0.5)
        s.init_db()
        with pool.connection():  # the only connection, taken
            error, took = timed(s.get, "nobody")
        assert isinstance(error, DatabaseUnavailable)
        assert "all 1 connections of the pool stayed busy" in str(error)
        assert took < 1.5
        with pytest.raises(SagaNotFound):
            s.get("nobody")  # free again


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "5", True])
def test_connect_timeout_is_checked(value: object) -> None:
    with pytest.raises(ValueError, match="connect_timeout"):
        Saga("shop", "postgresql://127.0.0.1/test", connect_timeout=value)  # type: ignore[arg-type]
