"""Targeted mutation testing of the decision, lease and recovery code.

Each mutation in `MUTATIONS` replaces one piece of source text (which must occur exactly
once) in a temporary copy of the tree, then runs the tests that ought to notice, against
one PostgreSQL shared by every run. A mutation that no test notices *survives*: some
promise is not pinned. The report goes to docs/MUTATIONS.md (or `--out`).

    .venv/bin/python scripts/mutate.py              # every mutation, then the report
    .venv/bin/python scripts/mutate.py --check      # only check that each one applies
    .venv/bin/python scripts/mutate.py --only cap --only fence-off   # a few (report to stdout)
    .venv/bin/python scripts/mutate.py --only cap --out docs/MUTATIONS.md  # a few, written

The list is data, kept in one table, so that it is easy to retarget when the code it
names moves: `--check` names the mutations whose text is no longer found.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "MUTATIONS.md"
TIMEOUT = 600.0  # seconds for one mutation's tests; a hang counts as caught (and is shown)

# The tests that ought to notice each kind of change (the default suite's, not -m slow).
DECISION = ("tests/test_decide.py", "tests/test_promises.py", "tests/test_transitions.py",
            "tests/test_steps.py", "tests/test_api.py")
LEASE = ("tests/test_transitions.py", "tests/test_store.py", "tests/test_store_folded.py",
         "tests/test_store_apply.py", "tests/test_run_on_lease.py", "tests/test_steps.py",
         "tests/test_runner.py", "tests/test_steering.py")
RECOVERY = ("tests/test_promises.py", "tests/test_heartbeat.py", "tests/test_outages.py",
            "tests/test_runner.py")
API = ("tests/test_promises.py", "tests/test_api.py", "tests/test_steering.py")


@dataclass(frozen=True)
class Mutation:
    name: str  # short, for --only
    what: str  # the promise it breaks
    path: str
    old: str  # source text, found exactly once in *path*
    new: str
    tests: tuple[str, ...]
    equivalent: str = ""  # why no test can tell, if none can: then it may survive


MUTATIONS: tuple[Mutation, ...] = (
    # -- the retry policy: defaults, cap, jitter (saga/spec.py) --------------------------
    Mutation("max-attempts", "default max_attempts 25 -> 2", "saga/spec.py",
             "MAX_ATTEMPTS: Final = 25", "MAX_ATTEMPTS: Final = 2", DECISION),
    Mutation("backoff-base", "default backoff_base 1 s -> 4 s", "saga/spec.py",
             "BACKOFF_BASE: Final = 1.0", "BACKOFF_BASE: Final = 4.0", DECISION),
    Mutation("backoff-max", "default backoff cap 1 h -> 2 min", "saga/spec.py",
             "BACKOFF_MAX: Final = 3600.0", "BACKOFF_MAX: Final = 120.0", DECISION),
    Mutation("cap", "the backoff is no longer capped", "saga/spec.py",
             "delay = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 62))",
             "delay = base * 2.0 ** min(max(attempt, 1) - 1, 62)", DECISION),
    Mutation("no-jitter", "the backoff has no jitter", "saga/spec.py",
             "return delay * (1.0 - JITTER * rand())", "return delay", DECISION),
    Mutation("wide-jitter", "the jitter takes up to half the delay off", "saga/spec.py",
             "JITTER: Final = 0.25", "JITTER: Final = 0.5", DECISION),
    # -- the verdicts: decide() and exhausted() (saga/outcomes.py) -------------------------
    Mutation("exhausted-off-by-one", "the last attempt is retried once more",
             "saga/outcomes.py",
             "if attempt >= policy.max_attempts:\n                return Fail(error)",
             "if attempt > policy.max_attempts:\n                return Fail(error)", DECISION),
    Mutation("crash-loop-off-by-one", "a step that kills its worker gets one claim more",
             "saga/outcomes.py", "return attempt > policy.max_attempts",
             "return attempt > policy.max_attempts + 1", DECISION),
    Mutation("decide-continue-undelayed", "a delayed continuation runs at once",
             "saga/outcomes.py", "return Continue(step, input, state, delay)",
             "return Continue(step, input, state, 0.0)", DECISION),
    Mutation("decide-continue-drops-state", "a continuation's new state is not written",
             "saga/outcomes.py", "return Continue(step, input, state, delay)",
             "return Continue(step, input, None, delay)", DECISION),
    Mutation("decide-complete-drops-state", "a final value is not written as the state",
             "saga/outcomes.py", "return Complete(state)", "return Complete(None)", DECISION),
    Mutation("decide-rejected-retried", "a rejected attempt (SagaError, bad outcome) is "
             "retried", "saga/outcomes.py",
             "case Rejected(error):\n            return Fail(error)",
             "case Rejected(error):\n            return Retry(error, policy.delay(attempt, rand))",
             DECISION),
    Mutation("decide-crash-fails", "a crash ends in ERROR at once, no retry",
             "saga/outcomes.py", "return Retry(error, policy.delay(attempt, rand))",
             "return Fail(error)", DECISION),
    Mutation("decide-backoff-ahead", "a retry waits the next attempt's backoff",
             "saga/outcomes.py", "return Retry(error, policy.delay(attempt, rand))",
             "return Retry(error, policy.delay(attempt + 1, rand))", DECISION),
    Mutation("decide-abandoned-retried", "a row claimed past max_attempts is retried",
             "saga/outcomes.py", "return Fail(f\"step {step!r} was claimed",
             "return Retry(delay=1.0, error=f\"step {step!r} was claimed", DECISION),
    # -- what a step's outcome means (saga/execution.py) -----------------------------------
    Mutation("saga-error-retried", "SagaError is retried instead of final",
             "saga/execution.py",
             "except (SagaError, _BadOutcome) as e:\n"
             "            result = Rejected(str(e) or type(e).__name__)",
             "except (SagaError, _BadOutcome) as e:\n"
             "            result = Crashed(str(e) or type(e).__name__)", DECISION),
    Mutation("foreign-step-allowed", "a step may continue with another saga's step",
             "saga/execution.py", "if not self.spec.owns(value.step):", "if False:",
             DECISION),
    Mutation("bad-outcome-retried", "an unrecordable outcome of a plain step is retried",
             "saga/execution.py",
             "result = self._result_of(step, value)\n        except _LeaseLost:",
             "result = self._result_of(step, value)\n"
             "            if isinstance(result, Rejected):\n"
             "                result = Crashed(result.error)\n"
             "        except _LeaseLost:", DECISION),
    Mutation("unencodable-final-state", "an unencodable final state is not an outcome error",
             "saga/execution.py",
             "return Rejected(f\"step {step.name!r} returned a final state",
             "return Crashed(f\"step {step.name!r} returned a final state", DECISION),
    # -- the lease -------------------------------------------------------------------------
    Mutation("complete-without-lease", "complete ignores the claim's attempt",
             "sql/queries.sql",
             "called = false, updated_at = statement_timestamp()\n"
             "     WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 "
             "AND attempts = %(attempt)s",
             "called = false, updated_at = statement_timestamp()\n"
             "     WHERE id = %(id)s AND status = 1", LEASE),
    Mutation("set-state-without-lease", "set_state writes a row the runner lost",
             "sql/queries.sql",
             "updated_at = statement_timestamp()\n"
             " WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 "
             "AND attempts = %(attempt)s;",
             "updated_at = statement_timestamp()\n WHERE id = %(id)s;", LEASE),
    Mutation("fail-without-runner", "a failure is written by a runner that lost the row",
             "sql/queries.sql",
             "error = %(error)s, runner_id = NULL,\n"
             "           run_after = statement_timestamp() + make_interval(secs => %(delay)s),"
             " updated_at = statement_timestamp()\n"
             "     WHERE id = %(id)s AND runner_id = %(runner_id)s AND",
             "error = %(error)s, runner_id = NULL,\n"
             "           run_after = statement_timestamp() + make_interval(secs => %(delay)s),"
             " updated_at = statement_timestamp()\n"
             "     WHERE id = %(id)s AND", LEASE),
    Mutation("run-on-without-lease", "an undelayed continuation moves a row the runner "
             "lost", "sql/queries.sql",
             "error = NULL, updated_at = statement_timestamp()\n"
             "     WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 "
             "AND attempts = %(attempt)s",
             "error = NULL, updated_at = statement_timestamp()\n"
             "     WHERE id = %(id)s AND status = 1", LEASE),
    Mutation("schedule-without-lease", "a delayed continuation moves a row the runner lost",
             "sql/queries.sql",
             "WHERE id = %(id)s AND runner_id = %(runner_id)s AND status = 1 "
             "AND attempts = %(attempt)s\n    RETURNING id, name, status)",
             "WHERE id = %(id)s AND status = 1\n    RETURNING id, name, status)", LEASE),
    Mutation("fail-ignores-attempt", "a failure of an earlier claim is written over a later "
             "one", "sql/queries.sql",
             "AND attempts = %(attempt)s\n    RETURNING id, status)\n"
             "SELECT status, CASE WHEN status <> 0",
             "\n    RETURNING id, status)\nSELECT status, CASE WHEN status <> 0", LEASE),
    # -- the lease as Store.apply reports it, and what the worker does with it ------------
    Mutation("lost-lease-unnoticed", "a write that matched no row is taken for a written "
             "outcome", "saga/store.py",
             "}).fetchone()\n        return None if row is None else int(row[0])\n\n"
             "    def plan_generically",
             "}).fetchone()\n        return 0 if row is None else int(row[0])\n\n"
             "    def plan_generically", LEASE),
    Mutation("folded-lost-lease-unnoticed", "a folded write that matched no row is taken for "
             "a written outcome", "saga/store.py",
             "status: int | None = None\n        claimed",
             "status: int | None = 0\n        claimed", LEASE),
    Mutation("apply-runs-on-while-stopping", "a stopping runner runs continuations on "
             "instead of handing them back", "saga/store.py",
             "if delay == 0 and run_on:", "if delay == 0:", LEASE),
    Mutation("apply-retry-is-final", "Store.apply writes a Retry as ERROR", "saga/store.py",
             "return self.fail(conn, lease, error=error, final=False, delay=delay)",
             "return self.fail(conn, lease, error=error, final=True, delay=delay)", LEASE),
    Mutation("apply-fail-is-retried", "Store.apply writes a Fail back to PENDING",
             "saga/store.py", "return self.fail(conn, lease, error=error, final=True, "
             "delay=0.0)", "return self.fail(conn, lease, error=error, final=False, delay=0.0)",
             LEASE),
    Mutation("run-on-keeps-attempt", "a continuation run on keeps the claim's attempt in its "
             "lease", "saga/execution.py", "lease._replace(attempt=1)", "lease", LEASE),
    Mutation("claim-not-skip-locked", "claims wait on each other's rows", "sql/queries.sql",
             "LIMIT %(limit)s\n                  FOR UPDATE SKIP LOCKED) AS due",
             "LIMIT %(limit)s\n                  FOR UPDATE) AS due", LEASE),
    Mutation("claim-not-due", "a claim takes rows that are not due yet", "sql/queries.sql",
             "AND run_after <= coalesce(%(now)s::timestamptz, statement_timestamp())",
             "", LEASE),
    Mutation("delayed-keeps-attempts", "a delayed continuation keeps the attempt count",
             "sql/queries.sql", "attempts = 0, error = NULL, called = false,",
             "error = NULL, called = false,", DECISION),
    Mutation("undelayed-counts-on", "an undelayed continuation counts on the attempts",
             "sql/queries.sql", "attempts = CASE WHEN cancel_requested THEN 0 ELSE 1 END,",
             "attempts = CASE WHEN cancel_requested THEN 0 ELSE attempts + 1 END,",
             DECISION),
    Mutation("handed-back-counts", "a claimed row handed back unstarted counts an attempt",
             "sql/queries.sql", "attempts = attempts - 1, updated_at = statement_timestamp()",
             "updated_at = statement_timestamp()", LEASE),
    Mutation("stale-ignores-cancel", "a stale row whose cancel was asked runs again",
             "sql/queries.sql",
             "SET status = CASE WHEN cancel_requested THEN 4 ELSE 0 END, runner_id = NULL,\n"
             "           updated_at = statement_timestamp()\n"
             "     WHERE status = 1 AND runner_id = %(runner_id)s",
             "SET status = 0, runner_id = NULL,\n"
             "           updated_at = statement_timestamp()\n"
             "     WHERE status = 1 AND runner_id = %(runner_id)s", RECOVERY),
    # -- recovery: heartbeat, reaping, stale rows -----------------------------------------
    Mutation("release-stale-off", "an unwritten outcome never goes back to PENDING",
             "saga/liveness.py",
             "released = store.release_stale(conn, me, self._held(),\n"
             "                                       max(STALE_AGE, 2 * self.interval))",
             "released = 0", RECOVERY),
    Mutation("release-stale-in-flight", "rows a thread still works on are released",
             "sql/queries.sql", "AND NOT (id = ANY(%(in_flight)s))", "", RECOVERY),
    Mutation("claim-time-at-statement-start",
             "a claim delayed by a lock looks stale at once", "sql/queries.sql",
             "updated_at = clock_timestamp()", "updated_at = statement_timestamp()", RECOVERY,
             equivalent="psycopg sends the claim with the extended protocol, and the server "
             "stamps statement_timestamp() at Execute, after the table-lock wait of Parse "
             "and Bind: both give the moment the claim got its rows (a simple-protocol "
             "query would differ)"),
    Mutation("fence-off", "a runner whose heartbeat fails keeps claiming", "saga/liveness.py",
             "return time.monotonic() - self._last > self._fence_after", "return False",
             RECOVERY),
    Mutation("reap-at-once", "the first runner back after an outage reaps the others",
             "saga/liveness.py", "reap = began - self._steady_since >= self.timeout",
             "reap = True", RECOVERY),
    Mutation("reap-live-runners", "runners are reaped before they expire", "sql/queries.sql",
             "WHERE expires_at < statement_timestamp() - make_interval(secs => %(margin)s)",
             "WHERE expires_at < statement_timestamp() + interval '1 hour'", RECOVERY),
    Mutation("orphans-kept", "rows of a runner that is gone stay RUNNING", "sql/queries.sql",
             "AND NOT EXISTS (SELECT 1 FROM {schema}.runner AS r WHERE r.id = i.runner_id)",
             "AND false", RECOVERY),
    # -- the API's promises about connections and waiting ---------------------------------
    Mutation("pool-unchecked", "the pool hands out connections that died idle",
             "saga/pools.py", "check=_check,", "check=None,", API),
    Mutation("pool-checked-rarely", "a connection is checked only after 10 min idle",
             "saga/pools.py", "FRESH: Final = 1.0", "FRESH: Final = 600.0", API),
    Mutation("wait-recheck-rare", "wait() re-reads the row every 10 min without a NOTIFY",
             "saga/waiting.py", "RECHECK: Final = 5.0", "RECHECK: Final = 600.0", API),
    Mutation("wait-no-listen", "wait() does not listen for the instance's end",
             "saga/waiting.py",
             'conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(store.done_channel)))',
             'conn.execute("SELECT 1")', API),
)


@dataclass
class Result:
    mutation: Mutation
    verdict: str  # caught, SURVIVED, equivalent, timed out (caught), does not apply
    by: str  # the first failing test, when caught
    seconds: float


def copy_tree(into: Path) -> Path:
    """Copy the source tree (no venv, git or caches) to *into*/tree."""
    junk = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".*_cache",
                                  "build", "dist", "results")
    return Path(shutil.copytree(ROOT, into / "tree", ignore=junk))


def apply(tree: Path, mutation: Mutation) -> bool:
    """Apply *mutation* in *tree*; False if its text is not found exactly once."""
    path = tree / mutation.path
    text = path.read_text()
    if text.count(mutation.old) != 1:
        return False
    path.write_text(text.replace(mutation.old, mutation.new))
    return True


def run_tests(tree: Path, tests: Sequence[str], dsn: str) -> tuple[int | None, str]:
    """Run *tests* in *tree* (its `saga` package first on the path); return the exit code
    (None on timeout) and the output."""
    env = {**os.environ, "PYTHONPATH": str(tree), "SAGA_TEST_DSN": dsn}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-m", "not slow", *tests]
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as e:
        return None, str(e.stdout or "")
    return done.returncode, done.stdout + done.stderr


def first_failure(output: str) -> str:
    # "FAILED path::test[an id, maybe with spaces] - message" (not a captured log line,
    # "ERROR    saga.loop:...", whose level is padded with spaces)
    found = re.search(r"^(?:FAILED|ERROR) (\S.*?)(?: - |$)", output, re.MULTILINE)
    return found.group(1) if found else "?"


def check_imports(tree: Path) -> None:
    """Make sure a run in *tree* imports the copy's `saga`, not the installed one."""
    out = subprocess.run([sys.executable, "-c", "import saga; print(saga.__file__)"],
                         cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                         capture_output=True, text=True, check=True).stdout.strip()
    if not out.startswith(str(tree)):
        raise SystemExit(f"a run in the copy imports {out}, not the copy's saga")


def mutate(mutation: Mutation, dsn: str) -> Result:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pgsaga-mutant-") as tmp:
        tree = copy_tree(Path(tmp))
        if not apply(tree, mutation):
            return Result(mutation, "does not apply", "", 0.0)
        code, output = run_tests(tree, mutation.tests, dsn)
    took = time.monotonic() - began
    if code is None:
        return Result(mutation, "timed out", "(hung)", took)
    if code == 0:
        if mutation.equivalent:
            return Result(mutation, "equivalent", "", took)
        return Result(mutation, "SURVIVED", "", took)
    if code == 1:
        return Result(mutation, "caught", first_failure(output), took)
    return Result(mutation, f"error (pytest exit {code})", output[-300:], took)


@contextmanager
def database() -> Iterator[str]:
    """One PostgreSQL for every run: SAGA_TEST_DSN, else a throwaway cluster."""
    sys.path.insert(0, str(ROOT))
    from saga.testing import temporary_postgres

    with temporary_postgres() as dsn:
        yield dsn


def baseline(dsn: str, chosen: Sequence[Mutation]) -> None:
    """The unmutated tree passes every test the chosen mutations use, or nothing can be
    judged."""
    tests = sorted({t for m in chosen for t in m.tests})
    with tempfile.TemporaryDirectory(prefix="pgsaga-baseline-") as tmp:
        tree = copy_tree(Path(tmp))
        check_imports(tree)
        code, output = run_tests(tree, tests, dsn)
    if code != 0:
        raise SystemExit(f"the unmutated tree fails its tests:\n{output[-3000:]}")


@cache
def commit() -> str:
    """The commit the run started at (asked once: a run may outlast the next commit)."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False).stdout.strip() or "?"


def partial(results: Sequence[Result]) -> list[str]:
    """A line saying which mutations a run left out, if it left any out."""
    ran = {r.mutation.name for r in results}
    left = [m.name for m in MUTATIONS if m.name not in ran]
    if not left:
        return []
    return [f"This run covered {len(ran)} of the {len(MUTATIONS)} mutations; it left out "
            f"{', '.join(f'`{n}`' for n in left)}.", ""]


def render(results: Sequence[Result], started: datetime) -> str:
    survived = [r for r in results if r.verdict == "SURVIVED"]
    lines = [
        "# Mutation report",
        "",
        "<!-- Generated by scripts/mutate.py: do not edit by hand; rerun it. -->",
        "",
        f"Run of {started:%Y-%m-%d %H:%M} UTC at commit `{commit()}`: "
        f"{len(results)} mutations, {len(survived)} survived. Each mutation is applied "
        "alone to a copy of the tree; the tests listed for it (the default suite's, "
        "`-x`) then run against it. *caught* names the first test that failed.",
        "",
        *partial(results),
        "| mutation | what it breaks | file | verdict | caught by | s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.mutation
        lines.append(f"| `{m.name}` | {m.what} | `{m.path}` | {r.verdict} | "
                     f"`{r.by}` | {r.seconds:.0f} |" if r.by else
                     f"| `{m.name}` | {m.what} | `{m.path}` | {r.verdict} | | "
                     f"{r.seconds:.0f} |")
    notes = [f"- `{r.mutation.name}` is equivalent: {r.mutation.equivalent}."
             for r in results if r.verdict == "equivalent"]
    if notes:
        lines += ["", "Survivors that no test can tell from the code, and why:", "", *notes]
    lines += ["", "Reproduce with `.venv/bin/python scripts/mutate.py` (about "
              f"{sum(r.seconds for r in results) / 60:.0f} minutes here).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only this mutation (repeatable); the report goes to stdout")
    parser.add_argument("--check", action="store_true",
                        help="only check that every mutation applies to the current code")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write the report (default {REPORT.relative_to(ROOT)}; "
                        "with --only, stdout unless given)")
    args = parser.parse_args(argv)
    known = {m.name for m in MUTATIONS}
    if unknown := set(args.only) - known:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.check:
        stale = [m.name for m in chosen if (ROOT / m.path).read_text().count(m.old) != 1]
        print("every mutation applies" if not stale else f"retarget: {', '.join(stale)}")
        return 1 if stale else 0
    started = datetime.now(timezone.utc)
    commit()
    out = args.out if args.out is not None or args.only else REPORT
    results: list[Result] = []
    with database() as dsn:
        baseline(dsn, chosen)
        for mutation in chosen:
            result = mutate(mutation, dsn)
            print(f"{mutation.name:32} {result.verdict:16} {result.by} ({result.seconds:.0f}s)",
                  flush=True)
            results.append(result)
            if out is not None:  # after each one: an interrupted run still says what it did
                out.write_text(render(results, started))
    if out is None:
        print(render(results, started))
    else:
        print(f"wrote {out}")
    return 1 if any(r.verdict in ("SURVIVED", "does not apply") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
