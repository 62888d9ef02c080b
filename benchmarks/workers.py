"""Real worker processes, and the one measuring protocol the throughput-like benchmarks
share: seed sagas with SQL, start `python -m saga.worker`, time the work on the
database's clock.

Protocol (`run_sagas`): N `bench` instances are inserted first (one INSERT ... SELECT
generate_series, ids contiguous), then the worker processes start. The clock starts at
the earliest `runner.started_at` (stamped by the server when a runner registers, after
Python has imported everything) and stops at the last `updated_at` of the N rows, so
interpreter start-up is left out and both ends come from one clock. Progress is polled
by primary-key range, which stays cheap however large the rest of the table is.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from psycopg import sql

from . import apps
from .harness import ROOT, Conn, Database, wait_until

WORKER: Final = (sys.executable, "-m", "saga.worker")
TARGET: Final = "benchmarks.apps:saga"
START_TIMEOUT: Final = 30.0  # for a worker process to register its runner
STOP_TIMEOUT: Final = 30.0


class WorkerProcess:
    """`python -m saga.worker` in the background; its output goes to a temporary file."""

    def __init__(self, db: Database, schema: str, *, threads: int, target: str = TARGET,
                 options: Sequence[str] = (), dsn: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        env = {**os.environ, apps.SCHEMA_VAR: schema, **(env or {})}
        env.pop("SAGA_DSN", None)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            [*WORKER, target, "--dsn", dsn or db.dsn, "--workers", str(threads),
             "--log-level", "WARNING", *options],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.pid = self.proc.pid

    def __repr__(self) -> str:
        return f"<WorkerProcess pid={self.pid} returncode={self.proc.returncode}>"

    def output(self) -> str:
        """What the worker wrote so far (stdout and stderr)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def check(self) -> None:
        """Raise `RuntimeError` with the worker's output if it has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker {self.pid} exited with {self.proc.returncode}:\n"
                               f"{self.output()[-4000:]}")

    def rss_kb(self) -> int:
        """The worker's resident set size in KiB (VmRSS), 0 once it has exited."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def stop(self) -> int:
        """SIGTERM (a graceful stop), then SIGKILL after STOP_TIMEOUT; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@contextlib.contextmanager
def workers(db: Database, schema: str, *, processes: int = 1, threads: int = 8,
            target: str = TARGET, options: Sequence[str] = (),
            dsn: str | None = None,
            env: dict[str, str] | None = None) -> Iterator[list[WorkerProcess]]:
    """Start *processes* worker processes of *threads* threads (on *dsn*, else the
    database's own; with *options* and *env* added); stop them all on exit."""
    started: list[WorkerProcess] = []
    try:
        for _ in range(processes):
            started.append(WorkerProcess(db, schema, threads=threads, target=target,
                                         options=options, dsn=dsn, env=env))
        yield started
    finally:
        for w in started:
            w.stop()


def table(schema: str, name: str = "instance") -> sql.Composed:
    """`schema.name`, quoted."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def seed(conn: Conn, schema: str, n: int, *, name: str = apps.NAME, step: str = "first",
         status: int = 0, run_after: float = 0.0, prefix: str = "i") -> tuple[int, int]:
    """Insert *n* instances in one statement; return their first and last row id.

    `run_after` is seconds from now (negative: overdue). Rows are inserted in id order
    with run_after rising by a microsecond each, so claims take them in id order. A
    random tag in the instance ids keeps two seeds from colliding.
    """
    if n <= 0:
        return 0, -1
    row = conn.execute(sql.SQL("""
        WITH made AS (
            INSERT INTO {t} (name, instance_id, step, input, status, run_after)
            SELECT %(name)s, %(prefix)s || g, %(step)s, jsonb_build_object('n', g),
                   %(status)s,
                   statement_timestamp() + make_interval(secs => %(after)s)
                                         + g * interval '1 microsecond'
              FROM generate_series(1, %(n)s) AS g
            RETURNING id)
        SELECT min(id), max(id) FROM made""").format(t=table(schema)),
        {"name": name, "prefix": f"{prefix}-{os.urandom(4).hex()}-", "step": step, "status": status,
         "after": run_after, "n": n}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


@dataclass
class Run:
    """What one measured run did."""

    sagas: int
    steps: int
    seconds: float
    steps_per_s: float
    complete: bool  # every saga finished before the deadline
    errors: int  # instances that ended in another status than COMPLETE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_sagas(db: Database, schema: str, sagas: int, *, threads: int, processes: int = 1,
              first: tuple[int, int] | None = None, timeout: float = 600.0,
              poll: float = 0.2,
              sample: Callable[[float, int, list[WorkerProcess]], None] | None = None,
              dsn: str | None = None, options: Sequence[str] = (),
              env: dict[str, str] | None = None, target: str = TARGET) -> Run:
    """Seed *sagas* `bench` instances (unless *first* gives the id range of ones already
    seeded), run them on worker processes and time them (see the module docstring).

    *sample* is called at every poll with (seconds, steps done, workers). At *timeout*
    the run stops and reports the sagas finished so far, with `complete` False. The
    workers get *dsn* (a pooler's, say; the seeding and timing stay on the database's
    own) and *options*.
    """
    with db.connect() as conn:
        low, high = first if first is not None else seed(conn, schema, sagas)
        with workers(db, schema, processes=processes, threads=threads, dsn=dsn,
                     options=options, env=env, target=target) as procs:
            begun = _runners_started(conn, schema, procs)
            deadline = time.monotonic() + timeout
            while True:
                for w in procs:
                    w.check()
                finished, last = _progress(conn, schema, low, high)
                elapsed = _seconds(conn, begun)
                if sample is not None:
                    sample(elapsed, finished * len(apps.STEPS), procs)
                if finished == sagas:
                    break
                if time.monotonic() > deadline:
                    print(f"not finished in {timeout:g}s: {finished} of {sagas} sagas",
                          file=sys.stderr)
                    for w in procs:  # a worker stuck in a failing loop says why here
                        if w.output().strip():
                            print(f"worker {w.pid} wrote:\n{w.output()[-2000:]}",
                                  file=sys.stderr)
                    break
                time.sleep(poll)
        errors = conn.execute(sql.SQL(
            "SELECT count(*) FROM {t} WHERE id BETWEEN %s AND %s AND status > 2"
        ).format(t=table(schema)), (low, high)).fetchone()[0]  # type: ignore[index]
    complete = finished == sagas
    seconds = (last - begun).total_seconds() if complete and last else elapsed
    steps = finished * len(apps.STEPS)
    return Run(sagas=sagas, steps=steps, seconds=round(seconds, 3),
               steps_per_s=round(steps / seconds, 1) if seconds > 0 else math.nan,
               complete=complete, errors=int(errors))


def _runners_started(conn: Conn, schema: str, procs: list[WorkerProcess]) -> Any:
    """Wait until every worker has registered its runner; return the earliest start."""
    def registered() -> Any:
        for w in procs:
            w.check()
        row = conn.execute(sql.SQL("SELECT count(*), min(started_at) FROM {t}")
                           .format(t=table(schema, "runner"))).fetchone()
        return row[1] if row is not None and row[0] >= len(procs) else None
    return wait_until(registered, START_TIMEOUT, 0.02, "worker start")


def _progress(conn: Conn, schema: str, low: int, high: int) -> tuple[int, Any]:
    """How many of the rows low..high have finished, and the last update among them."""
    row = conn.execute(sql.SQL("""
        SELECT count(*) FILTER (WHERE status >= 2), max(updated_at)
          FROM {t} WHERE id BETWEEN %s AND %s""").format(t=table(schema)),
        (low, high)).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def _seconds(conn: Conn, since: Any) -> float:
    """Seconds from *since* to now, on the database clock."""
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return float((row[0] - since).total_seconds())
