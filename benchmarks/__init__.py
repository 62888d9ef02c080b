"""pgsaga's benchmarks (issue 3): each one compares the worker with what the database
itself can do, measured in the same run. See benchmarks/README.md.

Each benchmark is a module with `arguments()` (its command line), `execute(db, args)`
and `main()`, runnable as `python -m benchmarks.<name>`; `python -m benchmarks` runs
them all on one server.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Final

# In the order `python -m benchmarks` runs them: the limit first, the longest last, and
# statements after them all (it restarts an embedded server to load pg_stat_statements).
BENCHMARKS: Final = ("limit", "throughput", "schedules", "latency", "telemetry", "bulk_start",
                     "concurrent_start", "live", "memory", "backlog", "table_health",
                     "steplog_cost", "web_pages", "keyed", "statements")


def modules(names: Sequence[str] = BENCHMARKS) -> dict[str, ModuleType]:
    """The benchmark modules by name, in BENCHMARKS order."""
    return {name: importlib.import_module(f"{__name__}.{name}")
            for name in BENCHMARKS if name in names}
