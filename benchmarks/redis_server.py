"""The Redis that Celery and dramatiq are measured on: a throwaway ``redis-server`` or a URL.

Without ``--redis-url``, and when ``redis-server`` is on PATH, a server is started on a free
loopback port in a temporary directory with the durability the README's table states: the
append-only file on, fsync once a second, no RDB snapshots
(``--appendonly yes --appendfsync everysec --save ''``). Every system starts on an empty
database (``FLUSHDB``); the throwaway server and its directory are removed at the end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

#: Seconds a started server may take to answer PING.
START_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One Redis for every Redis-based system: ``url``, or a throwaway ``redis-server``.

    ``available`` is False (and ``why`` says why) when there is neither.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url: str | None = url
        self.why = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        if url:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            self.why = "no --redis-url given and no redis-server on PATH"
            return
        self._tmp = Path(tempfile.mkdtemp(prefix="pgqueue-bench-redis-"))
        port = _free_port()
        self._proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(self._tmp),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self._tmp / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{port}/0"
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    @property
    def available(self) -> bool:
        return self.url is not None

    def client(self) -> Any:
        """A new ``redis.Redis`` client on the server (the caller closes it)."""
        import redis

        assert self.url is not None
        return redis.Redis.from_url(self.url, decode_responses=True)

    def _wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                log = self._tmp / "redis.log" if self._tmp else None
                tail = log.read_text()[-2000:] if log and log.exists() else ""
                status = self._proc.returncode
                raise RuntimeError(f"redis-server exited with status {status}\n{tail}")
            try:
                client = self.client()
                try:
                    client.ping()
                    return
                finally:
                    client.close()
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not answer within {START_TIMEOUT:.0f} s"
                    ) from None
                time.sleep(0.05)

    def fresh(self) -> str:
        """Empty the database (``FLUSHDB``) and return its URL."""
        assert self.url is not None
        client = self.client()
        try:
            client.flushdb()
        finally:
            client.close()
        return self.url

    def describe(self) -> dict[str, str]:
        """Server version and the settings that decide what survives a crash."""
        client = self.client()
        try:
            info = client.info("server")
            out = {"redis_version": str(info.get("redis_version", "?"))}
            for name in ("appendonly", "appendfsync", "save"):
                value = client.config_get(name).get(name)
                out[name] = repr(value) if name == "save" else str(value)
            return out
        finally:
            client.close()

    def close(self) -> None:
        """Stop the throwaway server and remove its directory (a given URL is left alone)."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
