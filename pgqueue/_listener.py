"""The listener: one connection that LISTENs and hands notifications to callbacks.

It replaces pulsar's pubsub. The connection runs in autocommit mode and never opens a
transaction, so it holds no snapshot (no old xmin) however long it waits. When the connection
breaks (terminated backend, server restart, half-open socket caught by keepalives or by the
timed liveness check) the listener reconnects with exponential backoff, LISTENs again and calls
``on_reconnect`` so its owner can poll once for anything queued while it was away.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress

import psycopg

from ._db import connect, pooling, redact
from ._errors import ConfigurationError, first_line
from ._service import Service
from ._store import session

logger = logging.getLogger("pgqueue.listener")

NotifyHandler = Callable[[str, str], None]

#: Seconds without any traffic after which the listener runs ``SELECT 1`` to prove the
#: connection is alive (TCP keepalives catch most dead peers sooner).
LIVENESS_INTERVAL = 5.0
#: Seconds the liveness check waits for its answer before cutting the connection: a socket
#: whose peer stopped answering without closing (half-open, F08) is noticed within
#: LIVENESS_INTERVAL + LIVENESS_TIMEOUT seconds even where TCP keepalives cannot tell.
LIVENESS_TIMEOUT = 5.0
#: Seconds the listener waits for notifications before looking at its stop and new-channel
#: flags: how long :meth:`Listener.stop` and :meth:`Listener.listen` may wait for the thread
#: (at 0.25 s a stop took up to 240 ms, measured). 20 idle wake-ups a second cost well under
#: 0.1% of a core.
POLL_INTERVAL = 0.05
#: The longest pause between reconnect attempts, in seconds.
MAX_BACKOFF = 5.0


def listen_target(dsn: str, listen_dsn: str | None, who: str) -> str | None:
    """The DSN ``who`` (``"worker"``, ``"client"``, ...) LISTENs on, or None for poll-only,
    decided by probing (:func:`pgqueue._db.pooling`) and logged in one line saying why.

    ``listen_dsn`` when given (it must reach PostgreSQL with a session of its own); else
    ``dsn`` unless it goes through a transaction pooler, where LISTEN ends with the
    transaction: then None, and the owner polls. Raises :class:`ConfigurationError` when
    ``listen_dsn`` itself goes through a transaction pooler, and ``ConnectionFailed`` when a
    probed server cannot be reached.
    """
    if listen_dsn:
        found = pooling(listen_dsn)
        if found.pooled:
            raise ConfigurationError(
                f"the listen DSN {redact(listen_dsn)} goes through a transaction pooler "
                f"({found.why}), where LISTEN ends with each transaction: point --listen-dsn / "
                "PGQUEUE_LISTEN_DSN / listen_dsn= straight at PostgreSQL (or at a pool in "
                "session mode), or leave it out to run poll-only"
            )
        logger.info("%s: LISTEN through the listen DSN %s", who, redact(listen_dsn))
        return listen_dsn
    found = pooling(dsn)
    if found.pooled:
        logger.warning(
            "%s: poll-only, no LISTEN: %s goes through a transaction pooler (%s); give a "
            "listen DSN straight to PostgreSQL (--listen-dsn / PGQUEUE_LISTEN_DSN) to be woken "
            "at once",
            who,
            redact(dsn),
            found.why,
        )
        return None
    logger.info("%s: LISTEN through the main DSN (direct: %s)", who, found.why)
    return dsn


class Listener(Service):
    """A background thread LISTENing on channels for its owner (a :class:`Service`).

    ``on_notify(channel, payload)`` and ``on_reconnect()`` run on the listener thread and
    must return quickly (set an event, wake a waiter). Channels can be added while running
    with :meth:`listen`; :meth:`stop` ends the thread and closes the connection. Each round
    (:meth:`run_once`) connects if needed, then hands on what arrives within
    :data:`POLL_INTERVAL`.
    """

    MIN_BACKOFF = 0.1
    MAX_BACKOFF = MAX_BACKOFF

    def __init__(
        self,
        dsn: str,
        channels: Iterable[str],
        on_notify: NotifyHandler,
        on_reconnect: Callable[[], None] | None = None,
        application_name: str = "pgqueue-listener",
    ) -> None:
        super().__init__("pgqueue-listener")
        self.dsn = dsn
        self.on_notify = on_notify
        self.on_reconnect = on_reconnect
        self.application_name = application_name
        self.reconnects = 0
        self._channels: set[str] = set(channels)
        self._listening: set[str] = set()
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._ready = threading.Condition(self._lock)
        self._conn: psycopg.Connection[object] | None = None
        self._connected_once = False
        self._last_traffic = 0.0

    def listen(self, channels: Iterable[str], timeout: float | None = None) -> bool:
        """Add channels and wait until they are LISTENed on; False if ``timeout`` passed first."""
        with self._lock:
            new = set(channels) - self._channels
            self._channels |= new
        if new:
            self._changed.set()
        return self.wait_listening(timeout)

    def wait_listening(self, timeout: float | None = None) -> bool:
        """Block until every channel is LISTENed on; False on timeout."""
        with self._ready:
            return self._ready.wait_for(lambda: self._channels <= self._listening, timeout)

    def _interrupt(self) -> None:
        super()._interrupt()
        self._changed.set()

    def run_once(self) -> float:
        """Connect and LISTEN if not connected, then hand on the notifications that arrive
        within :data:`POLL_INTERVAL` (checking the connection after a silence)."""
        conn = self._conn
        if conn is None:
            conn = self._connect()
        if self._changed.is_set():
            self._subscribe(conn)
        got_any = False
        for notify in conn.notifies(timeout=POLL_INTERVAL):
            got_any = True
            self.on_notify(notify.channel, notify.payload)
            if self._changed.is_set() or self.stopping:
                break
        now = time.monotonic()
        if got_any:
            self._last_traffic = now
        elif now - self._last_traffic > LIVENESS_INTERVAL:
            _check_alive(conn)
            self._last_traffic = time.monotonic()
        return 0.0

    def on_error(self, exc: Exception) -> float | None:
        """The connection was lost: forget it and reconnect after a backoff."""
        self._drop()
        if self.stopping:
            return None
        delay = self.backoff()
        logger.warning(
            "listener connection lost (%s); reconnecting in %.1fs", first_line(exc), delay
        )
        return delay

    def close(self) -> None:
        """Close the connection; nothing is LISTENed on any more."""
        self._drop()
        with self._ready:
            self._ready.notify_all()

    def _connect(self) -> psycopg.Connection[object]:
        conn = connect(self.dsn, application_name=self.application_name)
        self._conn = conn
        self._subscribe(conn)
        if self._connected_once:
            self.reconnects += 1
            logger.warning("listener reconnected to %s", redact(self.dsn))
        self._connected_once = True
        self.succeeded()
        self._last_traffic = time.monotonic()
        if self.on_reconnect is not None:
            self.on_reconnect()
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        with self._lock:
            self._listening.clear()
        if conn is not None:
            with suppress(Exception):
                conn.close()

    def _subscribe(self, conn: psycopg.Connection[object]) -> None:
        with self._lock:
            wanted = set(self._channels)
            self._changed.clear()
        for channel in sorted(wanted - self._listening):
            session.listen(conn, channel)
        with self._ready:
            self._listening |= wanted
            self._ready.notify_all()


def _check_alive(conn: psycopg.Connection[object]) -> None:
    """Run ``SELECT 1``; if no answer comes within LIVENESS_TIMEOUT, shut the socket down so
    the waiting call fails and the listener reconnects."""
    timer = threading.Timer(LIVENESS_TIMEOUT, _cut, (conn,))
    timer.daemon = True
    timer.start()
    try:
        session.ping(conn)
    finally:
        timer.cancel()


def _cut(conn: psycopg.Connection[object]) -> None:
    logger.warning(
        "listener connection did not answer a liveness check within %.0fs; dropping it",
        LIVENESS_TIMEOUT,
    )
    with suppress(OSError, psycopg.Error):
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
