"""Render the benchmark tables of README.md and benchmarks/README.md from the JSON that
`benchmarks/harness.py` wrote to `benchmarks/results/`.

Each table sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` and is replaced
whole; the text around the markers is left alone. Every table says which run its figures
come from (commit, date, sizes, load), so a figure in the README can be traced to a
committed file. To publish new figures: run the benchmarks, commit the JSON, rerun this.

    .venv/bin/python scripts/bench_report.py            # rewrite the tables
    .venv/bin/python scripts/bench_report.py --check    # exit 1 if a table is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = (ROOT / "README.md", ROOT / "benchmarks" / "README.md")
Result = dict[str, Any]


def load(results: Path, name: str) -> Result:
    path = results / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path.relative_to(ROOT)} is missing: run python -m benchmarks.{name}")
    data: Result = json.loads(path.read_text())
    return data


def n(value: float, digits: int = 0) -> str:
    """1234.5 -> "1,235" (or "1,234.50" with *digits*)."""
    return f"{value:,.{digits}f}"


def source(r: Result, sizes: str) -> str:
    """Where a table's figures come from."""
    m = r["machine"]
    load_avg = m.get("load_average") or ["?"]
    return (f"`benchmarks/results/{r['benchmark']}.json`: commit `{m['commit']}`, "
            f"{r['date'][:10]}, {sizes}, PostgreSQL {r['server']['server_version']}, "
            f"load average {load_avg[0]}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def limit(results: Path) -> list[str]:
    r = load(results, "limit")
    by = {(x["script"], x["clients"]): x["steps_per_s"] for x in r["results"]}
    clients = r["settings"]["clients"]
    labels = {"claim_advance": "claim_advance (1 step per transaction)",
              "claim_batch": "claim_batch (10 steps per transaction)",
              "update": "update (one autocommit UPDATE)"}
    rows = [[labels.get(s, s), *(f"{n(by[(s, c)])} steps/s" for c in clients)]
            for s in r["settings"]["scripts"]]
    sizes = f"{r['settings']['duration']} s per line"
    return [f"From {source(r, sizes)}.", "",
            *table(["script", *(f"{c} clients" for c in clients)], rows)]


def throughput(results: Path) -> list[str]:
    r = load(results, "throughput")
    rows = []
    for x in r["results"]:
        label = (f"{x['processes']} process{'es' if x['processes'] > 1 else ''} x "
                 f"{x['threads']} thread{'s' if x['threads'] > 1 else ''}")
        cells = [label, n(x["steps_per_s"]), f"{x['ratio']:.2f}", n(x["limit_steps_per_s"])]
        if (x["processes"], x["threads"]) == (1, 8):
            cells = [f"**{c}**" for c in cells]
        rows.append(cells)
    s = r["settings"]
    sizes = (f"{n(s['sagas'])} sagas x {s['steps_per_saga']} steps, limit "
             f"{s['limit_seconds']} s before each run, best of {s['repeat']}")
    return [f"From {source(r, sizes)}. Target: >= {r['summary']['target_ratio']} at 8 "
            "threads.", "", *table(["worker", "steps/s", "ratio", "its limit, steps/s"], rows)]


def latency(results: Path) -> list[str]:
    r = load(results, "latency")
    names = {"notify": "NOTIFY",
             "poll": f"poll only (`--poll-interval {r['settings']['poll_interval']:g}`)"}
    rows = [[names.get(x["path"], x["path"]), x["trials"],
             *(f"{x[k]:.2f} ms" for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms",
                                          "call_p50_ms"))] for x in r["results"]]
    s, t = r["settings"], r["summary"]
    sizes = f"{s['trials_notify']} trials (NOTIFY), {s['trials_poll']} (poll)"
    return [f"From {source(r, sizes)}. Targets: p50 <= {t['target_p50_ms']:g} ms, "
            f"p99 <= {t['target_p99_ms']:g} ms.", "",
            *table(["path", "trials", "p50", "p90", "p99", "max",
                    "of which inside `start()` (p50)"], rows)]


BACKLOG = {"empty": "(empty table)", "waiting": "waiting: served saga, due in a day",
           "queue": "queue: served saga, due, behind the measured sagas",
           "other_saga": "other_saga: due, another saga",
           "unserved": "unserved: due, a step the worker does not know, ahead"}


def backlog(results: Path) -> list[str]:
    r = load(results, "backlog")
    rows = [[BACKLOG.get(x["scenario"], x["scenario"]), n(x["backlog_rows"]),
             n(x["steps_per_s"]), f"{x['ratio']:.2f}", f"{x['raw_ratio']:.2f}"]
            for x in r["results"]]
    s = r["settings"]
    sizes = (f"{n(s['sagas'])} sagas on {s['threads']} threads next to {n(s['rows'])} "
             f"PENDING + {n(s['rows'])} COMPLETE rows")
    return [f"From {source(r, sizes)}. Target: >= {r['summary']['target_ratio']}.", "",
            *table(["PENDING rows are", "rows", "steps/s", "ratio", "raw ratio"], rows)]


def memory(results: Path) -> list[str]:
    r = load(results, "memory")
    t, run = r["summary"], r["run"]
    sizes = f"{n(run['steps'])} steps on {r['settings']['threads']} threads"
    return [f"From {source(r, sizes)}. Target: growth < {t['target_growth_mb']:g} MB.", "",
            *table(["RSS at start", "after warm-up", "at the end", "growth",
                    "growth after warm-up", "steps/s"],
                   [[f"{t['rss_first_mb']:.1f} MB", f"{t['rss_warm_mb']:.1f} MB",
                     f"{t['rss_last_mb']:.1f} MB", f"+{t['growth_mb']:.2f} MB",
                     f"+{t['growth_after_warmup_mb']:.2f} MB", n(run["steps_per_s"])]])]


def bulk_start(results: Path) -> list[str]:
    r = load(results, "bulk_start")
    rows = []
    for x in r["results"]:
        what = (f"`start()` in a loop ({n(x['sagas'])})" if x["method"] == "start" else
                f"`start_many()`, batches of {n(x['batch'])}")
        dupes = (f"{n(x['duplicates_reported'])} of {n(x['duplicates_expected'])}"
                 if "duplicates_expected" in x else "-")
        rows.append([what, n(x["sagas_per_s"]), f"{x['vs_start']:.1f}", dupes])
    sizes = f"{n(r['settings']['sagas'])} sagas, no worker running"
    return [f"From {source(r, sizes)}. Target: >= {n(r['summary']['target_per_s'])}/s.", "",
            *table(["method", "sagas/s", "x `start()`", "duplicates reported on a restart"],
                   rows)]


def table_health(results: Path) -> list[str]:
    r = load(results, "table_health")
    rows = [[x["phase"], n(x["live"]), n(x["dead"]), n(x["updated"]),
             "-" if x["hot_ratio"] is None else f"{100 * x['hot_ratio']:.0f} %",
             f"{x['heap_mb']:.2f} MB", f"{x['indexes_mb']:.2f} MB"] for x in r["results"]]
    run = r["run"]
    sizes = f"{n(run['steps'])} steps ({n(run['sagas'])} sagas) on one worker"
    return [f"From {source(r, sizes)}; {r['summary']['updates_per_step']} updates per "
            "step.", "", *table(["phase", "live", "dead", "updates", "HOT", "heap",
                                 "indexes"], rows)]


def performance(results: Path) -> list[str]:
    """The README's headline table: one line per target, each naming its run."""
    tp, lat, bl = (load(results, x) for x in ("throughput", "latency", "backlog"))
    mem, bulk = load(results, "memory"), load(results, "bulk_start")
    eight = next(x for x in tp["results"] if (x["processes"], x["threads"]) == (1, 8))
    notify = next(x for x in lat["results"] if x["path"] == "notify")
    ratios = [x["ratio"] for x in bl["results"] if x["scenario"] != "empty"]
    per = {(x["method"], x["batch"]): x["sagas_per_s"] for x in bulk["results"]}

    def run(r: Result) -> str:
        return f"`{r['benchmark']}.json` ({r['machine']['commit']}, {r['date'][:10]})"

    rows = [
        ["throughput, 3-step no-op sagas, 1 worker process x 8 threads",
         f"{eight['ratio']:.2f} of the pgbench limit ({n(eight['steps_per_s'])} steps/s)",
         f">= {tp['summary']['target_ratio']}", run(tp)],
        ["wake-up, `start()` to the step's first line, idle worker",
         f"p50 {notify['p50_ms']:.2f} ms, p99 {notify['p99_ms']:.1f} ms "
         f"({notify['call_p50_ms']:.2f} ms of it is `start()`'s own commit)",
         f"{lat['summary']['target_p50_ms']:g} / {lat['summary']['target_p99_ms']:g} ms",
         run(lat)],
        [f"{n(bl['settings']['rows'])} PENDING + {n(bl['settings']['rows'])} COMPLETE rows "
         "in the table", f"{min(ratios):.2f}-{max(ratios):.2f} of the empty-table throughput",
         f">= {bl['summary']['target_ratio']}", run(bl)],
        [f"worker memory over {n(mem['run']['steps'])} steps",
         f"+{mem['summary']['growth_mb']:.1f} MB", f"< {mem['summary']['target_growth_mb']:g} MB",
         run(mem)],
        ["`start_many`, batches of 10,000",
         f"{n(per[('start_many', 10000)])} sagas/s (`start()` in a loop: "
         f"{n(per[('start', 1)])}/s)", f">= {n(bulk['summary']['target_per_s'])}/s", run(bulk)],
    ]
    return table(["", "figure", "target", "from"], rows)


SECTIONS: dict[str, Callable[[Path], list[str]]] = {
    "performance": performance, "limit": limit, "throughput": throughput,
    "latency": latency, "backlog": backlog, "memory": memory, "bulk_start": bulk_start,
    "table_health": table_health,
}


def render(text: str, results: Path) -> str:
    """*text* with every bench section it has rendered anew."""
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in SECTIONS:
            raise SystemExit(f"unknown section <!-- bench:{name} -->")
        body = "\n".join(SECTIONS[name](results))
        return f"<!-- bench:{name} -->\n{body}\n<!-- /bench:{name} -->"

    return re.sub(r"<!-- bench:(\w+) -->\n.*?<!-- /bench:\1 -->", fill, text, flags=re.DOTALL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a table differs from its JSON")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON")
    args = parser.parse_args(argv)
    stale = []
    for doc in DOCUMENTS:
        text = doc.read_text()
        rendered = render(text, args.results)
        if rendered != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(rendered)
    if args.check:
        if stale:
            print(f"out of date: {', '.join(map(str, stale))} (run scripts/bench_report.py)")
            return 1
        print("every table matches its JSON")
        return 0
    print(f"rewrote {', '.join(map(str, stale))}" if stale else "nothing to change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
