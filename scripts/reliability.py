"""Run the fault-injection suite and regenerate docs/RELIABILITY.md from its figures.

    .venv/bin/python scripts/reliability.py                  # on an embedded PostgreSQL
    .venv/bin/python scripts/reliability.py --dsn postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python scripts/reliability.py --render-only runs/  # re-render saved runs

Each run is `pytest -m "slow or not slow"` over tests/faults (which record figures),
tests/test_properties.py and tests/test_security.py, with SAGA_FAULT_FIGURES naming a
folder for the figures and a JUnit XML file for the outcomes. The embedded run unsets
SAGA_TEST_DSN; each `--dsn` run sets it, and leaves out the tests that restart a server:
those use an embedded cluster of their own whatever the run, so the embedded run has
them. The figures and outcomes of each run are kept in `--keep` (a temporary folder by
default), which `--render-only` reads back.

Only a whole run writes docs/RELIABILITY.md: with pytest arguments (`-- -k ...`), or when
a fault of FAULTS recorded no figure, the document goes into the runs' folder instead
(or to `--output`), and the exit status is 1. The section "What the suite found" is
hand-written history (FOUND below), and the document says so; everything else in it is
rendered from the runs.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "RELIABILITY.md"
SUITE = ["tests/faults", "tests/test_properties.py", "tests/test_security.py"]
FIGURES_ENV = "SAGA_FAULT_FIGURES"
DSN_ENV = "SAGA_TEST_DSN"
OWN_CLUSTER_TESTS = "tests/faults/test_restart.py"  # on an embedded cluster in every run

# The faults of issue 5, in its order: the test module of each.
FAULTS = [
    ("test_kill_storm", "Worker kill storm"),
    ("test_restart", "Database restart"),
    ("test_cuts", "Connections cut"),
    ("test_races", "Races: call() and cancel() against busy workers"),
    ("test_long_steps", "Long steps"),
    ("test_graceful_stop", "Graceful stop under load"),
    ("test_poison", "Poison and garbage"),
]

# What the suite exposed while it was written; each was fixed in the library, and the
# test that showed it stays. Hand-written history, not a figure of any run: edit it by
# hand when it grows. The document renders it under a heading that says so.
FOUND = [
    ("A worker could hang for ever on SIGTERM: the signal handler set an `Event` whose "
     "lock the interrupted main thread could be holding", "c8d1997",
     "test_graceful_stop.py"),
    ("A second `call()` silently replaced a first one that had not run yet (both callers "
     "were told it worked)", "c99bb47", "test_races.py"),
    ("Recovered rows queued behind every due row: 12 s median from a kill to the re-run "
     "with 2,000 sagas due, against ~2 s since", "c99bb47", "test_kill_storm.py"),
    ("A SQL NULL input ran a step whose annotation does not allow None", "8c7b218",
     "test_poison.py"),
    ("A malformed DSN given to `Saga()` put its password in the pool's log lines",
     "8c7b218", "test_security.py"),
    ("The migration role needed CREATE on the whole database even for a schema it owned; "
     "one statement was built with an f-string", "8faba53", "test_security.py"),
]


@dataclass
class Run:
    """One run of the suite: where, what it recorded, how its tests ended."""

    label: str
    folder: Path
    short: str = ""  # the label, in a table's header
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # test id: passed/failed/...

    def load(self) -> Run:
        self.meta = json.loads((self.folder / "run.json").read_text())
        self.label = self.meta["label"]
        self.short = self.meta.get("short", self.label)
        self.figures = [json.loads(p.read_text())
                        for p in sorted((self.folder / "figures").glob("*.json"))]
        self.outcomes = junit_outcomes(self.folder / "junit.xml")
        return self


def junit_outcomes(path: Path) -> dict[str, str]:
    """Each test's outcome, by pytest node id, from a JUnit XML report."""
    if not path.exists():
        return {}
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        # The suite's tests are functions: classname is the module's dotted path.
        test_id = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcomes[test_id] = ("failed" if kinds & {"failure", "error"}
                             else "skipped" if "skipped" in kinds else "passed")
    return outcomes


# -- running ------------------------------------------------------------------------------


def run_suite(label: str, short: str, dsn: str | None, folder: Path,
              extra: Sequence[str]) -> Run:
    """Run the suite once into *folder*; return its run (outcomes and figures loaded)."""
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != DSN_ENV}
    env[FIGURES_ENV] = str(folder / "figures")
    if dsn:
        env[DSN_ENV] = dsn
        extra = ["--deselect", OWN_CLUSTER_TESTS, *extra]
    command = [sys.executable, "-m", "pytest", "-m", "slow or not slow", "-p", "no:cacheprovider",
               "-q", f"--junitxml={folder / 'junit.xml'}", *SUITE, *extra]
    print(f"== {label}: {' '.join(command[2:])}", flush=True)
    began = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    meta = {"label": label, "short": short, "exit": result.returncode,
            "seconds": time.monotonic() - began,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "machine": machine()}
    (folder / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Run(label, folder).load()


def machine() -> str:
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"


def short_dsn(dsn: str) -> str:
    """host:port of a DSN, for a table's header."""
    sys.path.insert(0, str(ROOT))
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"


def describe_dsn(dsn: str) -> str:
    """The DSN without secrets (the library's own helper, so the password never shows)."""
    sys.path.insert(0, str(ROOT))
    from saga.conninfo import describe

    return describe(dsn)


# -- rendering ----------------------------------------------------------------------------


def cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def must_be_zero(value: object) -> str:
    if value is None:
        return "n/a"
    return str(value) if value == 0 else f"**{value}**"


def module_doc(module: str) -> str:
    """The docstring of tests/faults/<module>.py, as one paragraph per blank line."""
    path = ROOT / "tests" / "faults" / f"{module}.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    doc = re.sub(r"^Fault \d+: (\w)", lambda m: m.group(1).upper(), doc)
    return "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))


def outcome(run: Run, test: str) -> str:
    return run.outcomes.get(test, "not run")


def render(runs: Sequence[Run]) -> str:
    lines = [
        "# Reliability",
        "",
        "What the fault-injection suite (`tests/faults/`) measured: for each fault, the "
        "load, the faults injected, the sagas lost and the rows left `RUNNING` (both must "
        "be 0), the steps that ran more than once (the at-least-once cost), and how long "
        "recovery took. Every figure comes from a real run against a real PostgreSQL; none "
        "is typed in. Regenerate this file with `scripts/reliability.py` (see its "
        "docstring); do not edit it by hand. One section is not rendered from the runs: "
        "\"What the suite found\", a hand-written history kept in that script.",
        "",
        "## Runs",
        "",
        "| Run | PostgreSQL | Date | Tests | Wall time | Machine |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        versions = sorted({f["postgres"] for f in run.figures})
        counts: dict[str, int] = {}
        for result in run.outcomes.values():
            counts[result] = counts.get(result, 0) + 1
        tests = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
        lines.append(f"| {cell(run.label)} | {', '.join(versions) or '?'} | {run.meta['date']} "
                     f"| {tests} | {run.meta['seconds'] / 60:.1f} min | {run.meta['machine']}, "
                     f"Python {run.meta['python']} |")
    lines += [
        "",
        "The tests that restart the server or refuse its connections (fault 2) need a "
        "cluster of their own: they run on an embedded PostgreSQL, in the embedded run "
        "only. The machine was shared with other work while the suite "
        "ran, so times are indicative only; the tests assert correctness, never speed.",
        "",
        "## Summary",
        "",
        "| Fault | PostgreSQL | Load | Injected | Lost | Left RUNNING | Re-executed steps "
        "| Recovery | Test |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run, figure in ordered(runs):
        lines.append(
            f"| {cell(figure['fault'])} | {figure['postgres']} | {cell(figure['load'])} "
            f"| {cell(figure['injected'])} | {must_be_zero(figure['lost'])} "
            f"| {must_be_zero(figure['running'])} "
            f"| {'n/a' if figure['reexecuted'] is None else figure['reexecuted']} "
            f"| {cell(figure['recovery'])} | {outcome(run, figure['test'])} |")
    lines += ["", "## The faults", ""]
    for number, (module, title) in enumerate(FAULTS, 1):
        lines += [f"### {number}. {title}", "", module_doc(module), ""]
        by_test: dict[str, list[tuple[Run, dict[str, Any]]]] = {}
        for run, figure in ordered(runs):
            if f"/{module}.py::" in figure["test"]:
                by_test.setdefault(figure["test"], []).append((run, figure))
        for test, found in by_test.items():
            lines += [f"**{found[0][1]['fault']}** (`{test.split('::')[1]}`)", ""]
            lines += details(found)
    lines += bad_input_section(runs)
    lines += ["## What the suite found (hand-written history)", "",
              "Not rendered from the runs above: a list kept by hand in "
              "`scripts/reliability.py` (`FOUND`), with the figures as they were noted "
              "then. Bugs the suite exposed while it was written; each was fixed in the "
              "library, and the test that showed it stays:", "",
              *[f"- {what} (fixed in {commit}; `{test}`)." for what, commit, test in FOUND],
              ""]
    lines += [
        "## Reading the figures",
        "",
        "- *Lost*: sagas that did not end where their steps say (for the races: calls "
        "neither applied nor refused, or cancels not honoured).",
        "- *Re-executed steps*: step runs beyond the first, counted from a log that each "
        "step writes on a connection of its own (so a run whose outcome was lost still "
        "counts). They are the price of at-least-once delivery for effects outside the "
        "database; a step's writes through `conn` were exactly once in every run (counted "
        "separately, with no unique key to hide a duplicate).",
        "- *Recovery*: from the fault (a kill, the server back, a cut) to the work going on;"
        " what is measured is said in each row.",
        "",
    ]
    return "\n".join(lines)


def missing_faults(runs: Sequence[Run]) -> list[str]:
    """The fault modules of FAULTS for which no run recorded a figure."""
    found = {f["test"].split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
             for run in runs for f in run.figures}
    return [module for module, _ in FAULTS if module not in found]


def ordered(runs: Sequence[Run]) -> Iterable[tuple[Run, dict[str, Any]]]:
    """Every figure of every run, in the order of FAULTS, then by run."""
    rank = {module: i for i, (module, _) in enumerate(FAULTS)}

    def key(item: tuple[int, Run, dict[str, Any]]) -> tuple[int, str, int]:
        index, _, figure = item
        module = figure["test"].split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        return rank.get(module, len(rank)), figure["test"], index

    items = [(i, run, f) for i, run in enumerate(runs) for f in run.figures]
    for _, run, figure in sorted(items, key=key):
        yield run, figure


def details(found: Sequence[tuple[Run, dict[str, Any]]]) -> list[str]:
    """One table for one test: a row per figure, a column per run."""
    head = [f"PostgreSQL {f['postgres']}, {run.short} ({outcome(run, f['test'])})"
            for run, f in found]
    rows = [f"| Figure | {' | '.join(head)} |", "|---|" + "---|" * len(found)]
    names = {"load": "load", "injected": "injected", "lost": "lost",
             "running": "left RUNNING", "reexecuted": "re-executed steps",
             "recovery": "recovery"}
    keys: list[tuple[str, str | None]] = [(k, None) for k in names]
    for _, figure in found:
        for name, shown in figure.get("details", {}).items():
            parts = list(shown) if isinstance(shown, dict) else [None]
            keys += [(name, k) for k in parts if (name, k) not in keys]

    def value(figure: dict[str, Any], name: str, inner: str | None) -> str:
        got = figure.get(name) if name in names else figure.get("details", {}).get(name)
        if inner is not None:
            got = (got or {}).get(inner)
        return cell("n/a" if got is None else got)

    for name, inner in keys:
        label = names.get(name, name) + (f": `{inner}`" if inner is not None else "")
        rows.append(f"| {cell(label)} | "
                    + " | ".join(value(f, name, inner) for _, f in found) + " |")
    return [*rows, ""]


def bad_input_section(runs: Sequence[Run]) -> list[str]:
    lines = [
        "### 8. Bad input at the API; security",
        "",
        "`tests/test_properties.py` (hypothesis): JSON values, dataclasses and nested types "
        "round-trip through the codec and through `jsonb`; a value that cannot be encoded, "
        "anywhere inside an input, is a `TypeError` at `start`, `call` or a continuation, "
        "before the database is reached; instance ids, saga names, step names, schema names "
        "and delays are checked at the call site; hostile ids are stored as given; inputs "
        "of 10 MB (a string, a list, an object) run end to end. `tests/test_security.py`: "
        "no SQL built by string formatting, hostile schema names refused, no unpickling "
        "without the opt-in, no password in any output, the least-privilege roles of "
        "[SECURITY.md](SECURITY.md).",
        "",
        "| Run | Module | Passed | Failed | Failing tests |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        for module in ("tests/test_properties.py", "tests/test_security.py"):
            mine = {t: r for t, r in run.outcomes.items() if t.startswith(module)}
            failed = sorted(t.split("::", 1)[1] for t, r in mine.items() if r == "failed")
            passed = sum(1 for r in mine.values() if r == "passed")
            lines.append(f"| {cell(run.label)} | `{module}` | {passed} | {len(failed)} "
                         f"| {cell(', '.join(failed)) or '-'} |")
    return [*lines, ""]


# -- the command --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/reliability.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", action="append", default=[],
                        help="also run on this server (SAGA_TEST_DSN); repeatable")
    parser.add_argument("--no-embedded", action="store_true",
                        help="skip the run on an embedded PostgreSQL")
    parser.add_argument("--keep", type=Path, help="folder for the runs' figures and reports")
    parser.add_argument("--render-only", type=Path, metavar="FOLDER",
                        help="render the runs saved in FOLDER (by --keep); run nothing")
    parser.add_argument("--output", type=Path,
                        help=f"where to write the document (default: {OUTPUT.relative_to(ROOT)}"
                        " for a whole run, else the runs' folder)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = parser.parse_args(argv)

    if args.render_only:
        keep = args.render_only
        runs = [Run("", p).load() for p in sorted(args.render_only.iterdir())
                if (p / "run.json").exists()]
    else:
        keep = args.keep or Path(tempfile.mkdtemp(prefix="pgsaga-reliability-"))
        targets: list[tuple[str, str, str | None]] = []
        if not args.no_embedded:
            targets.append(("embedded PostgreSQL (saga.testing)", "embedded", None))
        targets += [(f"{DSN_ENV}: {describe_dsn(dsn)}", short_dsn(dsn), dsn)
                    for dsn in args.dsn]
        runs = [run_suite(label, short, dsn, keep / f"{i}", args.pytest_args)
                for i, (label, short, dsn) in enumerate(targets)]
        print(f"figures and reports kept in {keep}")
    if not runs:
        parser.error("nothing to render")
    partial = []
    if args.pytest_args and not args.render_only:
        partial.append(f"pytest arguments {' '.join(args.pytest_args)!r}")
    if missing := missing_faults(runs):
        partial.append(f"no figures from {', '.join(missing)}")
    output = args.output
    if output is None:
        output = keep / "RELIABILITY.md" if partial else OUTPUT
    if partial:
        print(f"a partial run ({'; '.join(partial)}): "
              + ("docs/RELIABILITY.md left as it is" if output != OUTPUT else
                 "written to docs/RELIABILITY.md as asked"))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(runs))
    print(f"wrote {output}")
    return max([int(run.meta["exit"] != 0) for run in runs] + [int(bool(partial))])


if __name__ == "__main__":
    sys.exit(main())
