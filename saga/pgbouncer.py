"""A throwaway PgBouncer in front of a test server, for the tests and the benchmarks.

Nothing in the runtime package imports this module. It runs Debian's (or any) `pgbouncer`
binary from PATH, in transaction pooling by default, on a free port of 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["PgBouncer", "pgbouncer_path", "temporary_pgbouncer"]

START_TIMEOUT: Final = 10.0
PoolMode = Literal["session", "transaction", "statement"]


def pgbouncer_path() -> str | None:
    """The `pgbouncer` binary on PATH (or Debian's /usr/sbin), or None."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


class PgBouncer:
    """One PgBouncer process serving *server_dsn*'s database as `dsn` (through it).

    `pool_size` is PgBouncer's `default_pool_size`: the server connections it opens for
    all clients together. `restart()` kills it and starts it again on the same port, so
    that every client connection breaks, as in a pooler's crash or redeploy.
    """

    def __init__(self, server_dsn: str, *, pool_size: int = 3,
                 pool_mode: PoolMode = "transaction", max_client_conn: int = 500) -> None:
        binary = pgbouncer_path()
        if binary is None:
            raise FileNotFoundError("pgbouncer is not installed (apt-get install pgbouncer)")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        self.binary = binary
        self.pool_size = pool_size
        self.pool_mode = pool_mode
        self.port = _free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="pgsaga-bouncer-"))
        self._user = _run_as(server_dsn)
        server = conninfo_to_dict(server_dsn)
        self.dbname = str(server.get("dbname") or "postgres")
        self.user = str(server.get("user") or "postgres")
        target = {k: server[k] for k in ("host", "port", "user", "password") if server.get(k)}
        target["dbname"] = self.dbname
        target.setdefault("port", 5432)
        entry = " ".join(f"{k}={v}" for k, v in target.items())
        # auth_type=any: clients are not authenticated (test use only) and every server
        # connection logs in as the database entry's user.
        self._config = self._dir / "pgbouncer.ini"
        self._config.write_text(f"""\
[databases]
{self.dbname} = {entry}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = any
admin_users = {self.user}
pool_mode = {pool_mode}
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {max_client_conn}
server_check_delay = 1
server_login_retry = 1
logfile = {self._dir / "pgbouncer.log"}
log_connections = 0
log_disconnections = 0
pidfile = {self._dir / "pgbouncer.pid"}
""")
        if self._user is not None:
            os.chown(self._dir, self._user.pw_uid, self._user.pw_gid)
            os.chown(self._config, self._user.pw_uid, self._user.pw_gid)
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<PgBouncer port={self.port} {self.pool_mode} pool_size={self.pool_size}>"

    @property
    def dsn(self) -> str:
        """The DSN of the database through PgBouncer."""
        return make_conninfo(host="127.0.0.1", port=self.port, dbname=self.dbname,
                             user=self.user)

    @property
    def admin_dsn(self) -> str:
        """The DSN of PgBouncer's admin console (`SHOW POOLS`; simple queries only)."""
        return make_conninfo(host="127.0.0.1", port=self.port, dbname="pgbouncer",
                             user=self.user)

    @property
    def log(self) -> str:
        path = self._dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Start the process and wait until it accepts connections."""
        if self._process is not None and self._process.poll() is None:
            return
        command = [self.binary, str(self._config)]
        if self._user is not None:  # PgBouncer refuses to run as root
            command[1:1] = ["-u", self._user.pw_name]
        # Its stderr goes to a file, never to a pipe: PgBouncer logs every login there
        # too, and would block once a pipe nobody reads is full.
        with (self._dir / "stderr.log").open("ab") as err:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                err_text = (self._dir / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"pgbouncer exited with {self._process.returncode}: "
                                   f"{err_text.strip()[-2000:] or self.log[-2000:]}")
            try:
                with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not answer on port {self.port}: "
                                       f"{self.log[-2000:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Kill the process (SIGKILL: clients see their connections break)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)

    def restart(self) -> None:
        """Kill PgBouncer and start it again on the same port."""
        self.stop()
        self.start()

    def show(self, what: str) -> list[dict[str, str]]:
        """An admin console listing (`SHOW POOLS`, `SHOW SERVERS`, ...) as dicts."""
        if not what.replace("_", "").isalpha():
            raise ValueError(f"not a SHOW listing: {what!r}")
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            result = conn.pgconn.exec_(f"SHOW {what}".encode())
            names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
            return [{names[c]: (result.get_value(r, c) or b"").decode()
                     for c in range(result.nfields)} for r in range(result.ntuples)]

    def server_connections(self) -> int:
        """How many server connections PgBouncer holds to the database now."""
        return sum(int(p["sv_active"]) + int(p["sv_idle"]) + int(p["sv_used"])
                   + int(p["sv_tested"]) + int(p["sv_login"])
                   for p in self.show("POOLS") if p["database"] == self.dbname)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def temporary_pgbouncer(server_dsn: str, *, pool_size: int = 3,
                        pool_mode: PoolMode = "transaction") -> Iterator[PgBouncer]:
    """Yield a started `PgBouncer` in front of *server_dsn*; stop and remove it on exit.

    Raise `FileNotFoundError` when pgbouncer is not installed.
    """
    bouncer = PgBouncer(server_dsn, pool_size=pool_size, pool_mode=pool_mode)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as(server_dsn: str) -> pwd.struct_passwd | None:
    """The user to run PgBouncer as when we are root: the owner of the server's socket
    directory (who can reach the socket), else `nobody`; None when we are not root."""
    if os.geteuid() != 0:
        return None
    host = str(conninfo_to_dict(server_dsn).get("host") or "")
    with contextlib.suppress(OSError, KeyError):
        if host.startswith("/"):
            owner = pwd.getpwuid(os.stat(host).st_uid)
            if owner.pw_uid != 0:
                return owner
    return pwd.getpwnam("nobody")
