"""Pooler mode: what changes when the DSN leads through a transaction-pooling pooler
(PgBouncer's `pool_mode = transaction`, Supabase's, RDS Proxy).

There, a client's session ends with its transaction: the next statement may run on
another server connection. So in pooler mode pgsaga keeps no session state between
transactions:

- no server-side prepared statements (psycopg's `prepare_threshold=None`), unless
  `prepared_statements=True` says the pooler keeps them (PgBouncer >= 1.21 with
  `max_prepared_statements`);
- no `SET` outside a transaction: the heartbeat's statement timeout is a `SET LOCAL`;
- no session advisory locks: migrations take `pg_advisory_xact_lock` (in every mode);
- no `LISTEN` through the pooler: `wait()` polls the row and the worker polls for due
  rows, unless the worker has a direct `listen_dsn` for its listener.
"""

from __future__ import annotations

import random
from typing import Final

WAIT_POLL_FIRST: Final = 0.05  # wait() in pooler mode: the first re-read of the row...
WAIT_POLL_MAX: Final = 1.0  # ...backing off (x1.5, jittered) to one read a second
POOLER_POLL_INTERVAL: Final = 0.5  # a worker's default poll interval without LISTEN


def check_pooler(pooler: object, prepared_statements: object) -> bool:
    """Return *pooler* if both options are of the right type, else raise `TypeError`."""
    if not isinstance(pooler, bool):
        raise TypeError(f"pooler must be True or False, got {pooler!r}")
    if prepared_statements is not None and not isinstance(prepared_statements, bool):
        raise TypeError(
            f"prepared_statements must be None, True or False, got {prepared_statements!r}")
    return pooler


def prepares(pooler: bool, prepared_statements: bool | None) -> bool:
    """Whether connections may prepare statements: as told, else only without a pooler."""
    return (not pooler) if prepared_statements is None else prepared_statements


def next_wait_pause(previous: float | None) -> float:
    """The pause before `wait()`'s next read in pooler mode: 50 ms, then x1.5 up to 1 s,
    each with +-20 % jitter so that many waiters do not read in step."""
    base = WAIT_POLL_FIRST if previous is None else min(WAIT_POLL_MAX, previous * 1.5)
    return base * random.uniform(0.8, 1.2)
