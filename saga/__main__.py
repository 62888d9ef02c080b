"""`python -m saga COMMAND` (or the `pgsaga` script): administration (list, show, stats,
start, call, retry, cancel, purge, migrate) and `worker`; see `saga.admin.cli`."""

from __future__ import annotations

import sys

from .admin.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main(prog="python -m saga"))
