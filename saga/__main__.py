"""`python -m saga COMMAND`: administration (list, show, stats, retry, cancel, purge,
migrate); see `saga.admin.cli`. `migrate` creates or upgrades the schema."""

from __future__ import annotations

import sys

from .admin.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
