"""`python -m saga web` (the dashboard on its own HTTP server) and `python -m saga
steplog on|off|status`: the commands this package adds to the admin CLI.

The server is the standard library's `wsgiref`, one thread per request: enough for the
few people who look at a dashboard, not a public web server. It binds to loopback
unless told otherwise; put a proxy with authentication in front before binding wider.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socketserver
import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .. import steplog
from ..admin.commands import CommandError
from .app import Dashboard
from .request import Access

logger = logging.getLogger(__name__)

DEFAULT_BIND: Final = "127.0.0.1:8080"
T = TypeVar("T")


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """A wsgiref server that answers each request on a thread of its own."""

    daemon_threads = True  # a hung request does not keep Ctrl-C from ending the server


class QuietHandler(WSGIRequestHandler):
    """Request lines go to the logger at DEBUG, not to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args,
                     extra={"action": "web_request"})


def bind_address(text: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`, or `:port` for loopback) as a (host, port) pair."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. {DEFAULT_BIND}, got {text!r}")
    return host, int(port)


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(app: Dashboard, host: str, port: int) -> ThreadingServer:
    """Make the server of *app* on (host, port); the caller runs `serve_forever()`."""
    server = make_server(host, port, app, server_class=ThreadingServer,
                         handler_class=QuietHandler)
    assert isinstance(server, ThreadingServer)
    return server


def web(args: argparse.Namespace, conn: Any, dsn: str) -> str:
    """`web`: serve the dashboard until interrupted."""
    if not steplog.installed(conn, args.schema):
        raise CommandError(f"schema {args.schema!r} predates the dashboard: "
                           "run `python -m saga migrate`")
    host, port = args.bind
    access = Access.READ_ONLY if args.read_only else Access.FULL
    if not loopback(host) and access is Access.FULL:
        print(f"pgsaga web: warning: anyone who reaches {host}:{port} may retry and cancel "
              "instances; pass --read-only, or put an authenticating proxy in front",
              file=sys.stderr)
    app = Dashboard(dsn, schema=args.schema, access=lambda environ: access)
    server = serve(app, host, port)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{server.server_port}/"
    print(f"pgsaga web: serving schema {args.schema} ({access.value}) on {url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
    return "pgsaga web: stopped"


def switch_steplog(args: argparse.Namespace, conn: Any, dsn: str) -> str:
    """`steplog on|off|status`."""
    if not steplog.installed(conn, args.schema):
        raise CommandError(f"schema {args.schema!r} has no step log yet: "
                           "run `python -m saga migrate`")
    if args.switch != "status":
        with conn.transaction():
            steplog.enable(conn, args.schema, on=args.switch == "on")
    state = "on" if steplog.enabled(conn, args.schema) else "off"
    return f"step log of schema {args.schema}: {state}"


def _web(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--bind", type=bind_address, default=bind_address(DEFAULT_BIND),
                     metavar="HOST:PORT", help=f"where to listen (default {DEFAULT_BIND})")
    cmd.add_argument("--read-only", action="store_true", help="show, never act")


def _steplog(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("switch", choices=("on", "off", "status"))


def specs(spec: Callable[..., T]) -> list[T]:
    """The admin CLI's entries (made with its *spec* class) for `web` and `steplog`."""
    return [
        spec("web", web, _web, "serve the web dashboard",
             "Serve the web dashboard of the schema: overview, instances, runners, "
             "schedules; retry and cancel unless --read-only. Binds to loopback by "
             "default.", json=False),
        spec("steplog", switch_steplog, _steplog, "turn the step log on or off",
             "Turn the step log of the schema on or off, or show whether it is on. When "
             "on, each step a worker runs is recorded (step, attempt, times, outcome) in "
             "the transaction of its outcome, for the dashboard's timeline; it costs each "
             "step two more writes. Needs the role that owns the tables.", json=False),
    ]
