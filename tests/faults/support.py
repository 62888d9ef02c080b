"""What the fault tests share: worker processes, the ledger of what ran, and figures.

Figures: each test records one `Figure` (the load, the faults injected, what was lost,
left RUNNING or run again, how long recovery took). With SAGA_FAULT_FIGURES naming a
directory, it is written there as JSON, which `scripts/reliability.py` renders into
docs/RELIABILITY.md; without it, it is only printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from saga import Status
from tests.helpers import Db, poll

T = TypeVar("T")

ROOT = Path(__file__).parents[2]
WORKER = (sys.executable, "-m", "saga.worker")
FIGURES_ENV = "SAGA_FAULT_FIGURES"


# -- worker processes ---------------------------------------------------------------------


class WorkerProcess:
    """A `python -m saga.worker` subprocess; its output goes to files, not to a pipe."""

    def __init__(self, args: Sequence[str], env: dict[str, str], logs: Path) -> None:
        self.out, self.err = logs.with_suffix(".out"), logs.with_suffix(".err")
        self.args = list(args)
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([*WORKER, *args], cwd=ROOT, env=env,
                                         stdout=out, stderr=err)
        self.pid = self.proc.pid
        self.started = time.monotonic()

    def __repr__(self) -> str:
        return f"<WorkerProcess pid={self.pid} returncode={self.proc.returncode}>"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no goodbye; the runner row stays until another runner reaps it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        """SIGTERM: a graceful stop."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Return the exit code; fail the test if the process still runs at *timeout*,
        showing where each of its threads was (faulthandler's dump on SIGABRT)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            pytest.fail(f"{self} still running after {timeout}s; stderr:\n{self.stderr()[-6000:]}")


class Workers:
    """Start worker processes of one app on one database and schema; `close()` kills
    whatever still runs (a test that fails must not leave workers behind)."""

    def __init__(self, dsn: str, schema: str, logs: Path) -> None:
        self.dsn, self.schema, self.logs = dsn, schema, logs
        self.started: list[WorkerProcess] = []

    def start(self, app: str, *options: str, dsn: str | None = None) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if k != "SAGA_DSN"}
        env["SAGA_TEST_SCHEMA"] = self.schema
        env["PYTHONFAULTHANDLER"] = "1"  # a SIGABRT dumps every thread's stack
        args = [app, "--dsn", dsn or self.dsn, *options]
        worker = WorkerProcess(args, env, self.logs / f"worker-{len(self.started)}")
        self.started.append(worker)
        return worker

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.started if w.alive]

    def stderr(self) -> str:
        """Every worker's stderr, for searching."""
        return "\n".join(w.stderr() for w in self.started)

    def wait_registered(self, ledger: Ledger, started: Sequence[WorkerProcess],
                        timeout: float = 60.0) -> None:
        """Wait until each of *started* has its runner row; fail with their stderr if not
        (a worker still importing dies of a SIGTERM, and holds nothing yet)."""
        pids = {w.pid for w in started}
        query = "SELECT coalesce(array_agg(pid), '{{}}') FROM {s}.runner"
        if not poll(lambda: pids <= set(ledger.one(query)), timeout, 0.1):
            dead = [f"{w}: {w.stderr()[-2000:]}" for w in started if w.pid not in
                    set(ledger.one(query))]
            pytest.fail(f"workers not registered within {timeout:.0f}s:\n" + "\n".join(dead))

    @staticmethod
    def stop(started: Sequence[WorkerProcess]) -> tuple[list[bool], list[int]]:
        """SIGTERM each of *started* and wait for it: which were still alive, and how
        each exited."""
        alive = [w.alive for w in started]
        for w in started:
            w.terminate()
        return alive, [w.wait(30) for w in started]

    def close(self) -> None:
        for worker in self.started:
            worker.kill()


# -- the ledger ---------------------------------------------------------------------------


class Ledger(Db):
    """`tests.helpers.Db` on a connection made on first use and replaced when it breaks
    (the database may be restarted or connections cut under it).

    `{s}` in a query is the schema.
    """

    def __init__(self, dsn: str, schema: str) -> None:  # no connection yet: made on use
        self.dsn, self.schema = dsn, schema
        self._conn: psycopg.Connection[Any] | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement; on a broken connection, reconnect and run it once more."""
        for again in (True, False):
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                cur = self._conn.execute(self.sql(query), params)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if not again:
                    raise
        raise AssertionError("unreachable")

    def count(self, status: Status) -> int:
        return int(self.one("SELECT count(*) FROM {s}.instance WHERE status = %s", int(status)))

    def runs(self, event: str = "run") -> Counter[tuple[str, str]]:
        """How often each (instance, step) logged *event* in `executed`."""
        return Counter({(i, s): n for i, s, n in self.rows(
            "SELECT instance, step, count(*) FROM {s}.executed WHERE event = %s "
            "GROUP BY 1, 2", event)})

    def effects(self) -> Counter[str]:
        """How many `effect` rows each instance committed."""
        return Counter({i: n for i, n in self.rows(
            "SELECT instance, count(*) FROM {s}.effect GROUP BY 1")})

    def reruns(self) -> list[tuple[str, str, datetime, datetime, int, int]]:
        """Each step run more than once: (instance, step, first run, second run, pid of
        the first, pid of the second), from the `executed` log."""
        return [tuple(r) for r in self.rows(
            "SELECT instance, step, at[1], at[2], pid[1], pid[2] FROM ("
            " SELECT instance, step, array_agg(at ORDER BY at) AS at,"
            "        array_agg(pid ORDER BY at) AS pid"
            "   FROM {s}.executed WHERE event IN ('run', 'start') GROUP BY 1, 2) AS runs"
            " WHERE cardinality(at) > 1")]


def server_version(dsn: str) -> str:
    """The PostgreSQL server's version, e.g. "18.1"."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    return str(row[0]).split()[0]


def wait_for(predicate: Callable[[], T], timeout: float, what: str,
             interval: float = 0.1) -> T:
    """Poll *predicate* until it returns something truthy; fail naming *what* at *timeout*."""
    result = poll(predicate, timeout, interval)
    if not result:
        pytest.fail(f"{what}: not within {timeout:.0f}s")
    return result


# -- figures ------------------------------------------------------------------------------


@dataclass
class Figure:
    """What one fault test measured. Counts are None where they do not apply."""

    fault: str  # the fault, as a title: "Worker kill storm"
    load: str  # "2,000 sagas x 3 steps, 3 worker processes x 4 threads"
    injected: str  # "17 x kill -9"
    lost: int | None = None  # sagas not finished as their steps say (must be 0)
    running: int | None = None  # rows left RUNNING at the end (must be 0)
    reexecuted: int | None = None  # step runs beyond the first
    recovery: str = ""  # "median 2.4 s, max 3.1 s from kill to re-run"
    details: dict[str, object] = field(default_factory=dict)


class Figures:
    """Record the figures of the test *nodeid* (the `figures` fixture)."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self.recorded: list[dict[str, object]] = []

    def record(self, figure: Figure, dsn: str, **more: object) -> None:
        """Write *figure*, with the version of the server at *dsn*, to SAGA_FAULT_FIGURES."""
        entry = {"test": self.nodeid, "postgres": server_version(dsn), **asdict(figure), **more}
        self.recorded.append(entry)
        print(f"\nFIGURE {json.dumps(entry, default=str)}")
        folder = os.environ.get(FIGURES_ENV)
        if folder:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.nodeid)
            path = Path(folder) / f"{name}-{len(self.recorded)}.json"
            path.write_text(json.dumps(entry, indent=2, default=str) + "\n")


def spread(values: Iterable[float], unit: str = "s") -> str:
    """"median 1.2 s, max 3.4 s (n=17)", or "none" without values."""
    found = sorted(values)
    if not found:
        return "none"
    return (f"median {statistics.median(found):.2f} {unit}, max {found[-1]:.2f} {unit} "
            f"(n={len(found)})")


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()
