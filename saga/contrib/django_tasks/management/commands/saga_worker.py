"""`manage.py saga_worker [--queue NAME ...] [worker flags]`: the tasks' worker.

Every flag of `python -m saga.worker` (`--workers`, `--drain`, `--dsn`, ...) is passed to
it as is; `--queue` (repeatable) limits the worker to those queues.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import (  # type: ignore[import-untyped, unused-ignore]
    BaseCommand,
    CommandError,
)

TARGET = "saga.contrib.django_tasks.worker"


class Command(BaseCommand):  # type: ignore[misc]
    help = ("Run pgsaga's worker for the tasks of saga.contrib.django_tasks backends; "
            "other flags are those of python -m saga.worker (see its --help).")

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        """A parser that leaves the flags it does not know to `saga.worker`."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parse_known = parser.parse_known_args

        def parse_args(args: Any = None, namespace: Any = None) -> argparse.Namespace:
            options: argparse.Namespace
            options, rest = parse_known(args, namespace)
            options.worker_args = [*getattr(options, "worker_args", []), *rest]
            return options

        parser.parse_args = parse_args
        return parser

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--queue", action="append", dest="queues", metavar="NAME",
                            help="serve this queue only (repeatable; default: every queue "
                            "in each backend's QUEUES)")

    def handle(self, *args: Any, **options: Any) -> None:
        from saga import worker

        queues: list[str] | None = options.get("queues")
        for name in queues or []:
            if not name or "," in name or "." in name:
                raise CommandError(f"--queue {name!r}: a queue name for the worker may not "
                                   "be empty or contain ',' or '.'")
        target = f"{TARGET}:queues.{','.join(queues)}" if queues else f"{TARGET}:sagas"
        code = worker.main([target, *args, *options.get("worker_args", [])])
        if code:
            raise CommandError(f"the worker exited with status {code}", returncode=code)
