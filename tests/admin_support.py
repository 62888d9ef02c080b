"""What tests/test_admin_cli.py shares: the in-process `admin` runner, the real process,
a schema with two sagas, and rows inserted as they would be after some history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saga import Saga, Status
from saga.admin.cli import main
from tests.helpers import Db

ROOT = Path(__file__).parents[1]
TRACEBACK = ('Traceback (most recent call last):\n  File "app.py", line 3, in charge\n'
             '    pay()\nRuntimeError: the card was declined\n')


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def admin(dsn: str, schema: str, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run a command in-process on the test's schema; its --dsn and --schema come last."""
    def run(*args: str) -> Result:
        code = main([*args, "--dsn", dsn, "--schema", schema])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return run


def run_cli(*args: str, env_dsn: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m saga ARGS` for real; SAGA_DSN is set only to *env_dsn*."""
    env = {k: v for k, v in os.environ.items() if k != "SAGA_DSN"}
    if env_dsn is not None:
        env["SAGA_DSN"] = env_dsn
    return subprocess.run([sys.executable, "-m", "saga", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def shop(make_saga: Callable[..., Saga]) -> Saga:
    """A saga with two steps, and a second one ("mail") on the same schema."""
    s = make_saga("shop")

    @s.step
    def reserve(input: object) -> None:
        pass

    @s.step
    def charge(input: object) -> None:
        pass

    mail = make_saga("mail")

    @mail.step
    def send(input: object) -> None:
        pass

    return s


def add(db: Db, saga: str, instance: str, step: str, status: Status = Status.PENDING, *,
        updated: str = "0s", due: str = "0s", error: str | None = None,
        input: object = None) -> None:
    """Insert an instance as it would be after some history: *updated* and *due* ago."""
    db.execute("INSERT INTO {s}.instance (name, instance_id, step, status, input, error, "
               "updated_at, run_after, runner_id) VALUES (%s, %s, %s, %s, %s::jsonb, %s, "
               "now() - %s::interval, now() - %s::interval, %s)",
               saga, instance, step, int(status), json.dumps(input), error, updated, due,
               "r1" if status == Status.RUNNING else None)


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["instance"] for r in rows]
