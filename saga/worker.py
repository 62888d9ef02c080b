"""`python -m saga.worker app.module:saga [...]` (or `pgsaga worker ...`): a worker process.

Only the `pgsaga` command line imports this module (to hand `worker` over), so the
sagas' module is imported once, as the user named it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from .admin.arguments import ERROR_PREFIX, Parser, log_level, schema_name
from .conninfo import check_connection, describe
from .core import Saga
from .errors import SagaException
from .liveness import HEARTBEAT_TIMEOUT
from .logs import ContextFormatter, JsonFormatter
from .observe import StepObserver
from .pooling import POOLER_POLL_INTERVAL
from .runner import CLAIM_BATCH, GRACE, POLL_INTERVAL, Runner

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class StartupError(Exception):
    """A worker cannot start: the message says what is wrong, in one line."""


def load_object(target: str, example: str = "app.sagas:saga") -> object:
    """Import `module:attribute` and return the attribute (`StartupError` if it fails)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise StartupError(f"{target!r}: expected MODULE:ATTRIBUTE, e.g. {example}")
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise StartupError(f"{target!r}: cannot import module {module_name!r}: {e}") from e
    except Exception as e:
        raise StartupError(f"{target!r}: importing {module_name!r} failed: "
                           f"{type(e).__name__}: {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as e:
            if isinstance(e.__cause__, LookupError | ValueError):  # the target says why
                raise StartupError(f"{target!r}: {e.__cause__}") from e
            raise StartupError(f"{target!r}: {module_name!r} has no attribute {attr!r}") from e
    return obj


def load_sagas(targets: Sequence[str]) -> list[Saga]:
    """Import each `module:attribute` and return the sagas it names (a Saga or a list)."""
    found: list[Saga] = []
    for target in targets:
        obj = load_object(target)
        items = list(obj) if isinstance(obj, list | tuple) else [obj]
        for item in items:
            if not isinstance(item, Saga):
                raise StartupError(f"{target!r} is a {type(item).__name__}, not a saga.Saga")
            if item not in found:
                found.append(item)
    return found


def build_parser(prog: str = "python -m saga.worker") -> argparse.ArgumentParser:
    """The worker's options (the README's table lists them all: a test compares)."""
    parser = Parser(
        prog=prog,
        description="Run the steps of one or more sagas until stopped (SIGTERM/SIGINT).",
    )
    parser.add_argument("sagas", nargs="+", metavar="MODULE:ATTRIBUTE",
                        help="where a Saga (or a list of them) lives, e.g. app.sagas:saga")
    parser.add_argument("--workers", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument("--dsn", help="database for every saga (default: the saga's own, "
                        "else SAGA_DSN)")
    parser.add_argument("--drain", action="store_true",
                        help="run everything due, then exit (for cron)")
    parser.add_argument("--schema", type=schema_name,
                        help="schema of the sagas that name none in their code (default: "
                        "SAGA_SCHEMA, else saga)")
    parser.add_argument("--log-level", default="INFO", type=log_level,
                        help="debug, info, warning or error, in any case (default info)")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text lines, or one JSON object per line (default text)")
    parser.add_argument("--heartbeat-timeout", type=float, default=HEARTBEAT_TIMEOUT,
                        help=f"seconds of silence before a runner counts as dead "
                        f"(default {HEARTBEAT_TIMEOUT:g})")
    parser.add_argument("--poll-interval", type=float, default=None,
                        help=f"seconds between looks for due work when no NOTIFY comes "
                        f"(default {POLL_INTERVAL:g}; {POOLER_POLL_INTERVAL:g} without LISTEN)")
    parser.add_argument("--pooler", action="store_true",
                        help="the DSN leads through a pooler in transaction mode (PgBouncer): "
                        "no prepared statements, no session state, poll instead of LISTEN")
    parser.add_argument("--no-listen", dest="listen", action="store_false", default=None,
                        help="never LISTEN: poll for due work")
    parser.add_argument("--listen-dsn", help="a direct connection to the same database, "
                        "used only for LISTEN (with --pooler: millisecond wake-ups)")
    parser.add_argument("--grace", type=float, default=GRACE,
                        help=f"seconds in-flight steps get to finish on stop (default {GRACE:g})")
    parser.add_argument("--claim-batch", type=int, default=CLAIM_BATCH,
                        help=f"due rows a worker thread claims at once (default {CLAIM_BATCH})")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics at http://BIND:PORT/metrics "
                        "(needs pgsaga[prometheus])")
    parser.add_argument("--metrics-bind", default="127.0.0.1", metavar="BIND",
                        help="address the metrics endpoint listens on (default 127.0.0.1)")
    parser.add_argument("--observer", action="append", default=[], metavar="MODULE:ATTRIBUTE",
                        help="a StepObserver told of every step (repeatable), e.g. "
                        "app.audit:observer")
    parser.add_argument("--otel", action="store_true",
                        help="OpenTelemetry spans and metrics for every step, through the "
                        "global providers (needs pgsaga[otel] and an SDK set up)")
    return parser


def parse_args(argv: Sequence[str] | None, prog: str = "python -m saga.worker"
               ) -> argparse.Namespace:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        parser.error(f"--metrics-port must be in 0..65535, got {args.metrics_port}")
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.claim_batch < 1:
        parser.error(f"--claim-batch must be at least 1, got {args.claim_batch}")
    if args.listen is False and args.listen_dsn:
        parser.error("--listen-dsn and --no-listen contradict each other")
    for option in ("heartbeat_timeout", "poll_interval"):
        if getattr(args, option) is not None and not getattr(args, option) > 0:
            parser.error(f"--{option.replace('_', '-')} must be > 0")
    if args.grace < 0:
        parser.error("--grace must be >= 0")
    return args


def main(argv: Sequence[str] | None = None, prog: str = "python -m saga.worker") -> int:
    try:
        args = parse_args(argv, prog)
    except SystemExit as e:  # a usage error (2), --help (0)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if args.log_format == "json"
        else ContextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    try:
        with default_schema(args.schema):
            sagas = load_sagas(args.sagas)
    except StartupError as e:
        logging.getLogger(__name__).debug("cannot load the sagas", exc_info=e.__cause__)
        print(f"{ERROR_PREFIX} {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # a bad SAGA_SCHEMA, while a module made its Saga
        print(f"{ERROR_PREFIX} {e}", file=sys.stderr)
        return EXIT_FAILED
    _warn_about_schemas(sagas, args.schema)
    closers: list[Callable[[], None]] = []
    try:
        _connect(sagas, args.dsn, pooler=args.pooler)
        if args.listen_dsn:
            check_connection(args.listen_dsn)
        observers = _telemetry(args, sagas, closers)
        runner = Runner(sagas, workers=args.workers, heartbeat_timeout=args.heartbeat_timeout,
                        poll_interval=args.poll_interval, grace=args.grace,
                        claim_batch=args.claim_batch, observers=observers,
                        listen=args.listen, listen_dsn=args.listen_dsn)
        started = time.monotonic()
        stats = runner.run(drain=args.drain)
    except (StartupError, SagaException, ValueError, ConnectionError, OSError) as e:
        print(f"{ERROR_PREFIX} {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for close in closers:
            close()
        for s in sagas:
            s.close()
    if args.drain:
        print(f"drained: {stats.summary()} in {time.monotonic() - started:.1f}s", flush=True)
    return EXIT_FAILED if runner.aborted else EXIT_OK


def _telemetry(args: argparse.Namespace, sagas: list[Saga],
               closers: list[Callable[[], None]]) -> list[StepObserver]:
    """The observers that `--otel` and `--metrics-port` ask for (their extras imported
    only then); what must be closed at exit goes to *closers*."""
    observers: list[StepObserver] = []
    for target in args.observer:
        observer = load_object(target, "app.audit:observer")
        if not callable(getattr(observer, "step_started", None)) or not callable(
                getattr(observer, "step_finished", None)):
            raise StartupError(f"{target!r} is a {type(observer).__name__}, not a "
                               "StepObserver (step_started and step_finished)")
        observers.append(observer)  # type: ignore[arg-type]  # checked just above
    try:
        if args.otel:
            from .telemetry import otel
            traced = otel.instrument(sagas=sagas)
            observers.append(traced)
            closers.extend((otel.uninstrument, traced.close))
        if args.metrics_port is not None:
            from .telemetry import metrics
            exporter = metrics.serve(sagas, args.metrics_port, bind=args.metrics_bind)
            closers.append(exporter.close)
            observers.append(exporter.observer)
    except ImportError as e:
        raise StartupError(str(e)) from e
    return observers


@contextmanager
def default_schema(schema: str | None) -> Iterator[None]:
    """While the sagas' modules are imported, make *schema* (`--schema`) the one a `Saga`
    that names none takes: it reads SAGA_SCHEMA when it is made. A schema written in
    the code stays: the application that starts the instances uses that code too."""
    if schema is None:
        yield
        return
    before = os.environ.get("SAGA_SCHEMA")
    os.environ["SAGA_SCHEMA"] = schema
    try:
        yield
    finally:
        if before is None:
            del os.environ["SAGA_SCHEMA"]
        else:
            os.environ["SAGA_SCHEMA"] = before


def _warn_about_schemas(sagas: list[Saga], schema: str | None) -> None:
    for s in sagas:
        if schema is not None and s.schema != schema:
            logging.getLogger(__name__).warning(
                "saga %s keeps schema %s, which its code names (--schema %s is for the "
                "sagas that name none)", s.name, s.schema, schema,
                extra={"action": "schema_kept", "saga": s.name})


def _connect(sagas: list[Saga], dsn: str | None, *, pooler: bool = False) -> None:
    """Apply `--dsn` (else SAGA_DSN where a saga has no database of its own) and
    `--pooler`, and check that every database answers, before any thread starts."""
    fallback = os.environ.get("SAGA_DSN")
    for s in sagas:
        if pooler and not s.pooler:
            s.use_pooler()
        if dsn:
            s.use_dsn(dsn)
        elif s.dsn is None and not s.has_pool:
            if not fallback:
                raise StartupError(f"saga {s.name!r} has no database: pass --dsn or set SAGA_DSN")
            s.use_dsn(fallback)
    for target in {s.dsn for s in sagas if s.dsn}:
        check_connection(target)
    for s in sagas:
        if s.dsn:
            logging.getLogger(__name__).info("saga %s uses %s, schema %s", s.name,
                                             describe(s.dsn), s.schema)


if __name__ == "__main__":
    sys.exit(main())
