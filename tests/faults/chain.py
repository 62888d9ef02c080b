"""The load most fault tests put on the workers: N sagas of tests/apps/fault_chain.py
(`one` → `two` with `conn` → `three`), and the check that none of it was lost."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import psycopg

from saga import Status
from tests.apps import fault_chain
from tests.faults.support import Ledger

APP = "tests.apps.fault_chain:saga"
STEPS = ("one", "two", "three")


@dataclass
class Outcome:
    """Where the sagas ended, and how often each step ran."""

    statuses: dict[Status, int]
    runs: Counter[tuple[str, str]]  # (instance, step): runs logged
    effects: Counter[str]  # instance: `conn`-step effects committed

    @property
    def reexecuted(self) -> Counter[str]:
        """Step runs beyond the first, by step."""
        extra: Counter[str] = Counter({step: 0 for step in STEPS})
        for (_, step), n in self.runs.items():
            extra[step] += n - 1
        return extra

    def by_step(self) -> str:
        return ", ".join(f"{step}: {n}" for step, n in self.reexecuted.items())


class ChainLoad:
    """*sagas* instances of the fault chain on *ledger*'s schema, `three` pausing *pause* s.

    Their ids are `j0`, `j1`, ...: other instances in the schema are none of its business.
    """

    def __init__(self, ledger: Ledger, sagas: int, pause: float = 0.0) -> None:
        self.ledger, self.sagas, self.pause = ledger, sagas, pause
        self.ids = [f"j{i}" for i in range(sagas)]
        self._ids = set(self.ids)
        self._ready = False

    def describe(self) -> str:
        return f"{self.sagas:,} sagas x {len(STEPS)} steps (one with `conn`)"

    def init_db(self) -> None:
        """Create the schema and tables (`start` does it unless done)."""
        with fault_chain.build(self.ledger.schema, self.ledger.dsn) as saga:
            saga.init_db()
        with psycopg.connect(self.ledger.dsn) as conn:
            fault_chain.create_tables(conn, self.ledger.schema)
        self._ready = True

    def start(self) -> None:
        """Start every instance, in one transaction."""
        if not self._ready:
            self.init_db()
        with fault_chain.build(self.ledger.schema, self.ledger.dsn) as saga, \
                psycopg.connect(self.ledger.dsn) as conn:
            for id_ in self.ids:
                saga.start(id_, "one", fault_chain.Job(id_, pause=self.pause), conn=conn)

    def complete(self) -> int:
        """How many sagas are complete (-1 while the database does not answer)."""
        try:
            return int(self.ledger.one("SELECT count(*) FROM {s}.instance "
                                       "WHERE status = 2 AND instance_id LIKE 'j%%'"))
        except psycopg.OperationalError:
            return -1

    def outcome(self) -> Outcome:
        statuses = {Status(status): n for status, n in self.ledger.rows(
            "SELECT status, count(*) FROM {s}.instance WHERE instance_id LIKE 'j%%' "
            "GROUP BY 1")}
        runs = Counter({k: n for k, n in self.ledger.runs().items() if k[0] in self._ids})
        effects = Counter({k: n for k, n in self.ledger.effects().items() if k in self._ids})
        return Outcome(statuses, runs, effects)

    def check(self, outcome: Outcome) -> None:
        """Every saga complete, every step run at least once, every effect exactly once."""
        assert outcome.statuses == {Status.COMPLETE: self.sagas}
        missing = [(i, s) for i in self.ids for s in STEPS if outcome.runs[(i, s)] < 1]
        assert missing == []
        assert outcome.effects == Counter(dict.fromkeys(self.ids, 1))
