"""A real PgBouncer (Debian's ``/usr/sbin/pgbouncer``) in front of the test server.

:class:`PgBouncer` writes a configuration into a temporary directory, starts pgbouncer in the
foreground on a free TCP port of 127.0.0.1 and stops it with SIGTERM at :meth:`PgBouncer.stop`.
Every database name is forwarded to the server of the given DSN (``* =`` entry), so each
test's own database is reachable through it. ``max_prepared_statements = 0`` models PgBouncer
1.18, which has no prepared-statement support at all (the setting only exists from 1.21).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
#: The system user pgbouncer runs as when the tests run as root (it refuses root), the same
#: the embedded server runs as.
SYSTEM_USER = "embedded_postgres"


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """One pgbouncer process in front of the server of ``server_dsn``.

    :param pool_mode: ``transaction`` (the default) or ``session``.
    :param pool_size: server connections per database and user.
    :param max_client_conn: client connections it accepts (a fleet of worker processes opens
        a few each).
    """

    def __init__(
        self,
        server_dsn: str,
        pool_mode: str = "transaction",
        pool_size: int = 20,
        max_client_conn: int = 1000,
    ):
        params = conninfo_to_dict(server_dsn)
        self.user = str(params.get("user") or "postgres")
        host = str(params.get("host") or "/tmp")
        port = str(params.get("port") or "5432")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgqueue-pgbouncer-"))
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        version = subprocess.run([PGBOUNCER, "--version"], capture_output=True, text=True)
        found = re.search(r"(\d+)\.(\d+)", version.stdout)
        newer = found is not None and (int(found[1]), int(found[2])) >= (1, 21)
        lines = [
            "[databases]",
            f"* = host={host} port={port} user={self.user}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            f"unix_socket_dir = {self.dir}",
            "auth_type = trust",
            f"admin_users = {self.user}",
            f"auth_file = {self.dir / 'users.txt'}",
            f"pool_mode = {pool_mode}",
            f"default_pool_size = {pool_size}",
            f"max_client_conn = {max_client_conn}",
            # hundreds of processes connecting at once overflow the default backlog (128):
            # the dropped SYNs are retried after 1, 3, 7... s, past libpq's connect_timeout
            "listen_backlog = 4096",
            f"logfile = {self.dir / 'pgbouncer.log'}",
            f"pidfile = {self.dir / 'pgbouncer.pid'}",
            "ignore_startup_parameters = extra_float_digits,options",
        ]
        if newer:  # 1.21+ would otherwise handle prepared statements itself
            lines.append("max_prepared_statements = 0")
        (self.dir / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        command = [PGBOUNCER, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            shutil.chown(self.dir, SYSTEM_USER)
            for path in self.dir.iterdir():
                shutil.chown(path, SYSTEM_USER)
            command[1:1] = ["-u", SYSTEM_USER]
        # stderr repeats the log file: a pipe nobody reads fills after a few hundred
        # connections and PgBouncer then blocks on its next log line, serving no one
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen within {timeout}s: {self.log()}")

    def dsn(self, server_dsn: str) -> str:
        """``server_dsn`` (a database of the server) through this pgbouncer."""
        dbname = conninfo_to_dict(server_dsn).get("dbname") or "postgres"
        return make_conninfo(
            "", host="127.0.0.1", port=str(self.port), user=self.user, dbname=str(dbname)
        )

    def release(self, server_dsn: str) -> None:
        """Close every connection PgBouncer holds to that database (its admin console's
        ``KILL``, through psql: the console speaks only the simple query protocol), so a
        test's database has no connection left when the test ends."""
        dbname = conninfo_to_dict(server_dsn).get("dbname") or "postgres"
        subprocess.run(
            ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", "pgbouncer", "-c", f"KILL {dbname}"],
            capture_output=True, check=False, timeout=10,
        )  # fmt: skip

    def log(self) -> str:
        """What pgbouncer wrote to its log file so far."""
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        """Stop pgbouncer (SIGTERM, then SIGKILL after 5 s) and delete its directory."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
