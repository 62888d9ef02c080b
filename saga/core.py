"""`Saga`: the step registry and the blocking API (start, call, get, get_state, run)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Final, NoReturn

import psycopg
from psycopg_pool import ConnectionPool

from .codecs import Codec, JsonCodec
from .errors import ConcurrencyException, DuplicateSaga, SagaNotFound
from .execution import RunStats
from .limits import Kind, Limit, add, check_key
from .migrate import migrate
from .pooling import check_pooler, prepares
from .pools import CONNECT_TIMEOUT, Database
from .records import MAX_INSTANCE, MAX_NAME, Instance, Status, check_text
from .runner import Runner
from .schedules.spec import CATCH_UP_LIMIT, MAX_LATENESS, Schedule, declare
from .spec import BACKOFF_BASE, BACKOFF_MAX, MAX_ATTEMPTS, RetryPolicy, SagaSpec
from .sqlfiles import check_schema
from .steps import Delay, Step, StepFunction, delay_seconds
from .store import Conn, Store
from .tracehook import caller_span
from .waiting import wait_until_done

__all__ = ["BACKOFF_BASE", "BACKOFF_MAX", "MAX_ATTEMPTS", "MAX_INSTANCE", "MAX_NAME", "Saga",
           "StepRef", "check_text"]

StepRef = Step | str | StepFunction

START_MANY_CHUNK: Final = 5000  # instances per INSERT statement in start_many()


class Saga:
    """A saga definition: its steps, its database, and the API to drive its instances.

    Give it a *dsn* (else `SAGA_DSN` is read when the pool is first needed) or a
    psycopg_pool `ConnectionPool` of your own (*pool*, which `close()` leaves open).
    Without *schema*, `SAGA_SCHEMA` is read now, else it is "saga". A call waits at
    most *connect_timeout* seconds for a connection, then raises `DatabaseUnavailable`.
    *pooler* says the DSN leads through a transaction-pooling pooler (PgBouncer): no
    statement then relies on the session outliving its transaction (see `saga.pooling`).
    """

    def __init__(
        self,
        name: str,
        dsn: str | None = None,
        *,
        pool: ConnectionPool[Any] | None = None,
        schema: str | None = None,
        codec: Codec | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
        connect_timeout: float = CONNECT_TIMEOUT,
        pooler: bool = False,
        prepared_statements: bool | None = None,
    ) -> None:
        self.name = check_text("name", name, MAX_NAME)
        self.pooler = check_pooler(pooler, prepared_statements)
        self._db = Database(self.name, dsn, pool, timeout=connect_timeout,
                            prepare=prepares(pooler, prepared_statements))
        if isinstance(codec, type):
            raise TypeError(f"codec must be an instance, e.g. {codec.__name__}(), not the class")
        if codec is not None and not isinstance(codec, Codec):
            raise TypeError(f"codec must have encode() and decode(), got {codec!r}")
        self.policy = RetryPolicy(max_attempts, float(backoff_base), float(backoff_max))
        self.schema = check_schema(default_schema() if schema is None else schema)
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.steps: dict[str, Step] = {}
        self.limits: tuple[Limit, ...] = ()
        self.schedules: dict[str, Schedule] = {}
        self.store = Store(self.schema)
        self._runner: Runner | None = None

    def __repr__(self) -> str:
        return f"<Saga {self.name!r} schema={self.schema!r} steps={len(self.steps)}>"

    def __enter__(self) -> Saga:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- definition ---------------------------------------------------------------------

    def step(self, fn: StepFunction) -> Step:
        """Register *fn* as a step (a decorator). Calling the result returns a continuation."""
        step = Step(fn, self.name, self.codec, self.schema)
        if step.name in self.steps:
            raise ValueError(f"saga {self.name!r} already has a step named {step.name!r}")
        self.steps[step.name] = step
        return step

    def resolve(self, step: StepRef) -> Step:
        """Return the registered `Step` for *step* (a step, its function, or its name)."""
        if isinstance(step, Step):
            if self.steps.get(step.name) is not step:
                # a saga is its name in its schema: name both, or two Sagas of one name
                # (another schema, or another object) read as the same
                raise ValueError(
                    f"step {step.name!r} is registered on saga {step.owner!r} in schema "
                    f"{step.schema!r}, not on saga {self.name!r} in schema {self.schema!r}"
                    + (" (another Saga object of the same name and schema: register the "
                       "step on the saga that runs it)"
                       if (step.owner, step.schema) == (self.name, self.schema) else ""))
            return step
        if isinstance(step, str):
            found = self.steps.get(step)
            if found is None:
                known = ", ".join(sorted(self.steps)) or "none"
                raise ValueError(
                    f"unknown step {step!r} for saga {self.name!r} (registered: {known})"
                )
            return found
        for registered in self.steps.values():
            if registered.fn is step:
                return registered
        raise ValueError(
            f"{step!r} is not a step of saga {self.name!r}: register it with the saga's "
            "@step decorator"
        )

    def limit(self, *steps: StepRef, per_key: int | None = None, running: int | None = None,
              rate: int | None = None, per: float = 1.0) -> None:
        """Limit *steps* (none given: every step of the saga, those registered later too)
        across every worker, enforced when rows are claimed:

        - *per_key*: at most this many instances with one concurrency key (`start(...,
          key=)`) RUNNING these steps at once; 1 runs one at a time per key. Due keys are
          served round-robin, so one key's backlog cannot starve the others;
        - *running*: at most this many executions of these steps RUNNING at once;
        - *rate*: at most this many starts of these steps in any window of *per* seconds.

        A row held back stays PENDING, is not counted as an attempt, and is claimed once
        a slot frees. Declare limits before the worker starts (they travel in `spec()`).
        """
        names = tuple(self.resolve(step).name for step in steps) or None
        asked: tuple[tuple[Kind, int | None], ...] = (
            ("key", per_key), ("running", running), ("rate", rate))
        new = [Limit(kind, n, names, float(per) if kind == "rate" else 0.0)
               for kind, n in asked if n is not None]
        if not new:
            raise ValueError("limit() needs per_key=, running= or rate=")
        if rate is None and per != 1.0:
            raise ValueError("per= is the window of a rate: give rate= with it")
        if rate is not None:  # checked here too, so that the error names the call
            Limit("rate", rate, names, per)
        self.limits = add(self.limits, new)

    @property
    def keyed(self) -> bool:
        """True if a per-key limit applies: start() then needs a key."""
        return any(limit.kind == "key" for limit in self.limits)

    def limit_stats(self, *, conn: Conn | None = None) -> list[tuple[str, int, int]]:
        """(limit, slots in use, due rows waiting) for each declared limit; for a rate,
        "in use" is the starts in its current window."""
        spec = self.spec()
        if spec.limits_json is None:
            return []
        with self._connection(conn) as c:
            usage = {lim: (used, waiting) for lim, used, waiting in
                     self.store.limit_usage(c, self.name, spec.limits_json)}
        return [(limit.describe(), *usage.get(limit.id, (0, 0))) for limit in spec.limits]

    @property
    def max_attempts(self) -> int:
        return self.policy.max_attempts

    @property
    def backoff_base(self) -> float:
        return self.policy.backoff_base

    @property
    def backoff_max(self) -> float:
        return self.policy.backoff_max

    def spec(self) -> SagaSpec:
        """What a worker needs of this saga, frozen now: name, schema, steps, codec,
        policy, and whether it runs through a pooler."""
        return SagaSpec(self.name, self.schema, self.steps, self.codec, self.policy,
                        tuple(self.schedules.values()), limits=self.limits,
                        pooler=self.pooler)

    def schedule(
        self,
        name: str,
        step: StepRef,
        *,
        every: timedelta | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        input: object = None,
        catch_up: str = "latest",
        catch_up_limit: int = CATCH_UP_LIMIT,
        max_lateness: timedelta = MAX_LATENESS,
        overlap: str = "allow",
    ) -> Schedule:
        """Declare schedule *name*: start an instance at *step* at each tick, `every`
        interval or at each match of the `cron` expression in zone *tz*.

        *input* is a value or a function of the tick (a datetime in *tz*). `catch_up`
        ("latest", "skip" or "all", up to *catch_up_limit*), *max_lateness* and
        `overlap` ("allow", "skip") are explained in saga.schedules.timing. Raise
        `ValueError`/`TypeError` naming the schedule if anything is wrong.
        """
        try:
            target = self.resolve(step)
        except ValueError as e:
            raise ValueError(f"schedule {name!r} of saga {self.name!r}: {e}") from None
        if name in self.schedules:
            raise ValueError(f"saga {self.name!r} already has a schedule named {name!r}")
        declared = declare(self.name, name, target.name, target.encode_input, every=every,
                           cron=cron, tz=tz, input=input, catch_up=catch_up,
                           catch_up_limit=catch_up_limit, max_lateness=max_lateness,
                           overlap=overlap)
        self.schedules[name] = declared
        return declared

    # -- database -----------------------------------------------------------------------

    @property
    def dsn(self) -> str | None:
        """The DSN the saga's own pool connects to (None with a pool given, and before
        first use when it comes from SAGA_DSN)."""
        return self._db.dsn

    @property
    def has_pool(self) -> bool:
        """True if the saga was given a pool, or has opened its own."""
        return self._db.has_pool

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The connection pool, opened on first use."""
        return self._db.pool

    def database(self) -> str:
        """What identifies the saga's database: its DSN, or its given pool."""
        return self._db.identity()

    def use_dsn(self, dsn: str) -> None:
        """Point the saga at another database (the worker's `--dsn`).

        Its own pool, if open, is closed; a pool passed in is left to its owner.
        """
        self._db.use_dsn(dsn)

    def use_pooler(self, prepared_statements: bool | None = None) -> None:
        """Switch to pooler mode (the worker's `--pooler`) before the pool is opened.

        A pool of the saga's own that is open already is closed, to reopen without
        prepared statements; a pool passed in must have been made without them.
        """
        self.pooler = check_pooler(True, prepared_statements)
        self._db.use_prepare(prepares(True, prepared_statements))

    def ensure_pool_size(self, size: int) -> ConnectionPool[Any]:
        """Return the pool, grown to at least *size* connections if the saga owns it."""
        return self._db.ensure_pool_size(size)

    def close(self) -> None:
        """Close the saga's own pool (a pool passed in is the caller's to close)."""
        self._db.close()

    def init_db(self) -> list[str]:
        """Create or upgrade the schema; idempotent and safe from several processes at once.

        Return the names of the migrations applied.
        """
        with self.pool.connection() as conn:
            return migrate(conn, self.schema)

    @contextmanager
    def _connection(self, conn: Conn | None, *, atomic: bool = False) -> Iterator[Conn]:
        """The caller's connection as it is; else a pooled one in autocommit mode.

        Each operation of the API is one statement that decides alone (a read after it
        only explains a refusal), so on the saga's own connection it commits by itself,
        in one round trip; *atomic* wraps several statements in one transaction.
        """
        if conn is not None:
            if not isinstance(conn, psycopg.Connection):
                raise TypeError(f"conn must be a psycopg.Connection, got {conn!r}")
            with self.store.tables_required():
                yield conn  # the caller commits or rolls back; we never do
            return
        with self.store.tables_required(), self._db.autocommit() as own:
            if atomic:
                with own.transaction():
                    yield own
            else:
                yield own

    # -- the blocking API ---------------------------------------------------------------

    def start(
        self,
        instance: str,
        step: StepRef,
        input: object = None,
        state: object = None,
        *,
        delay: Delay | None = None,
        conn: Conn | None = None,
        key: str | None = None,
    ) -> None:
        """Create instance *instance*, due to run *step* with *input* after *delay*.

        *key* is its concurrency key (an account, a tenant: see `limit`), required when
        the saga has a per-key limit. Raise `DuplicateSaga` if it exists. With *conn*,
        run in the caller's transaction without committing it: the saga exists only if
        the caller commits.
        """
        check_text("instance", instance, MAX_INSTANCE)
        key = check_key(key, required=self.keyed, saga=self.name)
        target = self.resolve(step)
        encoded = target.encode_input(input)
        encoded_state = None if state is None else target.encode_state(state)
        seconds = delay_seconds(delay)
        with caller_span("start", self.name, target.name, instance) as trace, \
                self._connection(conn) as c:
            if not self.store.insert(c, self.name, instance, target.name, encoded,
                                     encoded_state, seconds, trace, key):
                raise DuplicateSaga(f"saga {self.name!r} already has an instance {instance!r}")

    def start_many(
        self,
        step: StepRef,
        items: Mapping[str, object] | Iterable[tuple[str, object]],
        *,
        state: object = None,
        delay: Delay | None = None,
        conn: Conn | None = None,
        key: str | Callable[[str, Any], str] | None = None,
    ) -> list[str]:
        """Create many instances at once, each due to run *step* with its own input.

        *items* maps instance ids to inputs (or is an iterable of (instance, input)
        pairs). Every input is checked before anything is written; the rows are then
        inserted a few thousand per statement, in one transaction, with one wake-up.
        Return the instance ids that already existed and so were not started (an id
        given twice counts once as started, then as a duplicate), in the order given.
        *key* is every instance's concurrency key, or a function of (instance, input)
        that returns each one's.
        """
        if key is not None and not callable(key):
            check_key(key, required=False, saga=self.name)
        elif key is None:
            check_key(None, required=self.keyed, saga=self.name)
        target = self.resolve(step)
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        instances: list[str] = []
        inputs: list[str] = []
        keys: list[str] | None = None if key is None else []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError(f"items[{i}] must be an (instance, input) pair, got {pair!r}")
            instances.append(check_text(f"items[{i}]: instance", pair[0], MAX_INSTANCE))
            if keys is not None:
                if callable(key):
                    try:
                        made = key(pair[0], pair[1])
                        if made is None:
                            raise TypeError("key must be a string, got NoneType")
                        keys.append(check_key(made, required=False, saga=self.name) or "")
                    except (TypeError, ValueError) as e:
                        raise type(e)(f"items[{i}] (instance {pair[0]!r}): {e}") from e
                else:
                    assert isinstance(key, str)
                    keys.append(key)
            try:
                inputs.append(target.encode_input(pair[1]))
            except TypeError as e:
                raise TypeError(f"items[{i}] (instance {pair[0]!r}): {e}") from e
        encoded_state = None if state is None else target.encode_state(state)
        seconds = delay_seconds(delay)
        created: set[str] = set()
        with caller_span("start_many", self.name, target.name, None, len(instances)) as trace, \
                self._connection(conn, atomic=True) as c:
            for at in range(0, len(instances), START_MANY_CHUNK):
                created |= self.store.insert_many(
                    c, self.name, target.name, instances[at:at + START_MANY_CHUNK],
                    inputs[at:at + START_MANY_CHUNK], encoded_state, seconds, trace,
                    None if keys is None else keys[at:at + START_MANY_CHUNK])
        duplicates = []
        for instance in instances:
            if instance in created:
                created.discard(instance)  # a second occurrence is a duplicate
            else:
                duplicates.append(instance)
        return duplicates

    def call(
        self,
        instance: str,
        step: StepRef,
        input: object = None,
        *,
        delay: Delay | None = None,
        conn: Conn | None = None,
    ) -> None:
        """Make *step* the next step of a PENDING instance, with *input*, after *delay*.

        Raise `SagaNotFound` for an unknown instance and `ConcurrencyException` when it
        is not PENDING (running or finished), or when an earlier call's step has not
        finished yet: a call is never silently replaced, so retry later. With *conn*,
        the caller commits.
        """
        check_text("instance", instance, MAX_INSTANCE)
        target = self.resolve(step)
        encoded = target.encode_input(input)
        seconds = delay_seconds(delay)
        with caller_span("call", self.name, target.name, instance) as trace:
            with self._connection(conn) as c:
                if self.store.call(c, self.name, instance, target.name, encoded, seconds,
                                   trace):
                    return
                found = self.store.status(c, self.name, instance)
            self._refuse_call(instance, found)  # raises, inside the span: it records why

    def _refuse_call(self, instance: str, found: tuple[int, bool] | None) -> NoReturn:
        """Raise the error that explains why `call` changed nothing."""
        if found is None:
            raise SagaNotFound(f"saga {self.name!r} has no instance {instance!r}")
        status, called = found
        if status == Status.PENDING and called:
            raise ConcurrencyException(
                f"instance {instance!r} of saga {self.name!r} has an earlier call whose "
                "step has not finished yet: call again once it has")
        if status == Status.PENDING:  # it was claimed, then handed back, while we looked
            raise ConcurrencyException(
                f"instance {instance!r} of saga {self.name!r} changed while being called")
        raise ConcurrencyException(
            f"instance {instance!r} of saga {self.name!r} is {Status(status).name}, not PENDING"
        )

    def get(self, instance: str, *, conn: Conn | None = None) -> Instance:
        """Return the record of *instance*; raise `SagaNotFound` if there is none."""
        check_text("instance", instance, MAX_INSTANCE)
        with self._connection(conn) as c:
            row = self.store.get(c, self.name, instance)
        if row is None:
            raise SagaNotFound(f"saga {self.name!r} has no instance {instance!r}")
        return Instance.from_row(row, self._decode_loosely)

    def get_state(self, instance: str, *, conn: Conn | None = None) -> object:
        """Return the decoded state of *instance*; raise `SagaNotFound` if there is none."""
        return self.get(instance, conn=conn).state

    def cancel(self, instance: str, *, conn: Conn | None = None) -> None:
        """Cancel *instance*: a PENDING one becomes CANCELLED at once; a RUNNING one is
        ended CANCELLED by its runner when its step returns (or fails), instead of going on.
        A last step that finishes still completes it.

        Raise `SagaNotFound` for an unknown instance and `ConcurrencyException` for one
        that is finished already. With *conn*, the caller commits.
        """
        check_text("instance", instance, MAX_INSTANCE)
        with self._connection(conn) as c:
            if self.store.cancel(c, self.name, instance) is not None:
                return
            found = self.store.status(c, self.name, instance)
        self._refuse(instance, found, "cancelled")

    def retry(self, instance: str, *, conn: Conn | None = None) -> None:
        """Replay an ERROR instance: PENDING again at the step that failed, with its
        input and state as they are and its attempts reset.

        Raise `SagaNotFound` for an unknown instance and `ConcurrencyException` unless it
        is in ERROR. With *conn*, the caller commits.
        """
        check_text("instance", instance, MAX_INSTANCE)
        with self._connection(conn) as c:
            if self.store.retry(c, self.name, instance):
                return
            found = self.store.status(c, self.name, instance)
        self._refuse(instance, found, "retried (only ERROR instances are)")

    def _refuse(self, instance: str, found: tuple[int, bool] | None, what: str) -> None:
        if found is None:
            raise SagaNotFound(f"saga {self.name!r} has no instance {instance!r}")
        raise ConcurrencyException(
            f"instance {instance!r} of saga {self.name!r} is {Status(found[0]).name}: "
            f"it cannot be {what}")

    def pause_schedule(self, name: str, *, conn: Conn | None = None) -> None:
        """Pause schedule *name*: no tick is made until `resume_schedule`. Raise
        `SagaNotFound` if the database knows no such schedule of this saga."""
        self._steer_schedule(name, conn, pause=True)

    def resume_schedule(self, name: str, *, conn: Conn | None = None) -> None:
        """Resume schedule *name* from now on: the ticks that fell while it was paused
        are not made. Raise `SagaNotFound` for an unknown schedule."""
        self._steer_schedule(name, conn, pause=False)

    def _steer_schedule(self, name: str, conn: Conn | None, *, pause: bool) -> None:
        from .schedules.store import ScheduleStore

        with self._connection(conn) as c:
            if ScheduleStore(self.schema).steer(c, self.name, name, pause=pause,
                                                declared=list(self.schedules.values())):
                return
        raise SagaNotFound(f"saga {self.name!r} has no schedule {name!r}")

    def wait(self, instance: str, timeout: float | None = None) -> Instance:
        """Block until *instance* is COMPLETE, ERROR or CANCELLED; return its record.

        Woken by a NOTIFY when it finishes (the row is also re-read every few seconds,
        in case a notification is missed); in pooler mode it polls the row instead, from
        every 50 ms up to every second. Raise `TimeoutError` after *timeout* seconds
        and `SagaNotFound` for an unknown instance.
        """
        check_text("instance", instance, MAX_INSTANCE)
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be None or >= 0 seconds, got {timeout!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.store.tables_required():
            wait_until_done(self.pool, self.store, self.name, instance, deadline,
                            listen=not self.pooler)
        return self.get(instance)

    def run(
        self,
        workers: int = 8,
        *,
        drain: bool = False,
        **options: Any,
    ) -> RunStats:
        """Run a worker for this saga in this process; block until `stop()` (or, with
        *drain*, until nothing is due). *options* go to `saga.runner.Runner`.
        """
        runner = Runner([self], workers=workers, **options)
        self._runner = runner
        try:
            return runner.run(drain=drain)
        finally:
            self._runner = None

    def stop(self) -> None:
        """Make a `run()` in another thread return, gracefully (as on SIGTERM).

        It acts on the run in progress: called before `run()` has begun, it does nothing.
        """
        runner = self._runner
        if runner is not None:
            runner.stop()

    # -- values -------------------------------------------------------------------------

    def _decode_loosely(self, step: str, text: str | None, which: int) -> object:
        """Decode for reading: typed when the step's annotations fit, else plain JSON.
        *which* is 0 for an input, 1 for a state."""
        if text is None:
            return None
        registered = self.steps.get(step)
        if registered is not None:
            try:
                return registered.decode_input(text) if which == 0 else (
                    registered.decode_state(text))
            except ValueError:
                pass
        try:
            return self.codec.decode(text, None)
        except Exception:  # an opaque payload (a foreign pickle): show it as stored
            return text


def default_schema() -> str:
    """The schema of a `Saga` that names none: `SAGA_SCHEMA`, else "saga"."""
    value = os.environ.get("SAGA_SCHEMA")
    if not value:
        return "saga"
    try:
        return check_schema(value)
    except ValueError as e:
        raise ValueError(f"SAGA_SCHEMA: {e}") from None

