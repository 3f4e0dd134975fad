"""A private PostgreSQL from the distribution's packages, for what the embedded server lacks.

The embedded server is built without LLVM, so it never JIT-compiles a query; the PostgreSQL
that Debian and Ubuntu ship (``postgresql-15``, installed by ``.ci/run``) has ``jit = on`` and
compiles any plan whose estimated cost passes ``jit_above_cost``. :class:`DebianServer` runs
``initdb`` with those binaries in a temporary directory, starts the server on a Unix socket
there (no TCP) and removes everything on :meth:`DebianServer.stop`. It runs as the embedded
server's system user when the tests run as root (``initdb`` refuses root).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from psycopg.conninfo import make_conninfo

from tests.support.pgbouncer_support import SYSTEM_USER, free_port
from tests.support.replication_support import as_server_user

#: Where Debian installs each major version's programs.
PACKAGES = Path("/usr/lib/postgresql")


def jit_bin_dir() -> Path | None:
    """The ``bin`` directory of the newest packaged PostgreSQL that can JIT-compile
    (``lib/llvmjit.so`` next to it), or None when none is installed."""
    found = [
        version / "bin"
        for version in PACKAGES.glob("*")
        if (version / "lib" / "llvmjit.so").exists() and (version / "bin" / "initdb").exists()
    ]
    return max(found, key=lambda path: int(path.parent.name), default=None)


class DebianServer:
    """A throwaway server of the packaged PostgreSQL in ``bin_dir`` (see the module)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="pgqueue-debian-pg-"))
        if as_server_user():
            shutil.chown(self.dir, SYSTEM_USER)
        self.data = self.dir / "data"
        self.port = free_port()
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = ''\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
            )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "start")

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            timeout=60,
            **as_server_user(),
        )
        if done.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed: {done.stdout}{done.stderr}{tail}")

    def dsn(self, database: str = "postgres") -> str:
        """The DSN of ``database`` on this server."""
        return make_conninfo(
            "", host=str(self.dir), port=str(self.port), user="postgres", dbname=database
        )

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                **as_server_user(),
            )
        shutil.rmtree(self.dir, ignore_errors=True)
