"""A TCP proxy in front of the test server that can turn connections into black holes.

A black-holed connection stays open and its bytes are still read (so TCP keeps acknowledging
them, as with a stuck middlebox or a hung peer), but nothing is forwarded in either direction:
the client waits for ever unless it has its own timed check (F08).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass
class Link:
    """One proxied connection: the client's application_name, and whether it is dropped."""

    client: socket.socket
    upstream: socket.socket
    application_name: str = ""
    dropped: threading.Event = field(default_factory=threading.Event)


class BlackholeProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to the server of ``dsn``."""

    def __init__(self, dsn: str) -> None:
        params = conninfo_to_dict(dsn)
        self.target_dsn = dsn
        host = str(params.get("host") or "localhost")
        port = int(params.get("port") or 5432)
        self._target: str | tuple[str, int] = (
            f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
        )
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.links: list[Link] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def dsn(self) -> str:
        """The DSN that goes through the proxy (no TLS, so the startup packet is readable)."""
        return make_conninfo(
            self.target_dsn,
            host="127.0.0.1",
            port=str(self.port),
            sslmode="disable",
            gssencmode="disable",
        )

    def blackhole(self, application_name: str) -> int:
        """Drop every open connection of this application; return how many."""
        with self._lock:
            chosen = [link for link in self.links if link.application_name == application_name]
        for link in chosen:
            link.dropped.set()
        return len(chosen)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accepting thread, which stops
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        with self._lock:
            for link in self.links:
                for sock in (link.client, link.upstream):
                    _end(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if isinstance(self._target, str):
                upstream = socket.socket(socket.AF_UNIX)
                upstream.connect(self._target)
            else:
                upstream = socket.create_connection(self._target)
            link = Link(client, upstream)
            with self._lock:
                self.links.append(link)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(link, src, dst), daemon=True).start()

    def _pump(self, link: Link, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                if not link.dropped.is_set():
                    _end(dst)
                return
            if not link.application_name and b"application_name\x00" in data:
                name = data.split(b"application_name\x00", 1)[1].split(b"\x00", 1)[0]
                link.application_name = name.decode()
            if link.dropped.is_set():
                continue
            try:
                dst.sendall(data)
            except OSError:
                return


def _end(sock: socket.socket) -> None:
    """Shut a socket down, then close it: close() alone leaves it open while a pump thread is
    blocked reading it, and the server then keeps the connection."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
