"""The heartbeat: a worker's service that proves, every ``lease/4`` seconds, that it lives.

It owns the worker's row: :meth:`Heartbeat.register` writes it at the start,
:meth:`Heartbeat.sign_off` marks it stopped at the end.

Each beat is one statement on the heartbeat's own connection (``HEARTBEAT_WORKER``): it sets
``heartbeat_at = now()`` on the worker's row, says whether that row is still live, and lists
the worker's running tasks whose revoke was requested, which catches revoke notifications
missed while the listener reconnected. A busy claimer or a job holding the GIL in bursts
cannot starve it, and beats keep a fixed rate: time spent waiting for the GIL is not added to
the interval.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from .. import _db
from .._service import Service
from .._store import Store
from .._store.workers import Registration
from ..errors import first_line

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]


class Heartbeat(Service):
    """Beats for worker ``worker_id`` every ``lease/4`` seconds until :meth:`stop`.

    :param lease: seconds after the last beat after which the worker counts as lost.
    :param queues: the queues the worker claims from, and ``backlog`` its most tasks at once
        (written in its row; the row is written again if it was deleted, pruned by mistake).
    :param on_revoked: called with the id of each running task whose revoke was requested.
    :param on_stopped: called when the row was marked stopped by someone else (its tasks are
        being rescued, so the worker must stop claiming).

    The first beat comes one interval after :meth:`start`; :meth:`stop` ends the beats and
    closes the connection. A failed beat is logged and the connection made anew at the next.
    """

    def __init__(
        self,
        dsn: str,
        store: Store,
        worker_id: str,
        lease: float,
        queues: Sequence[str],
        backlog: int,
        on_revoked: Callable[[str], None],
        on_stopped: Callable[[], None],
    ) -> None:
        super().__init__("pgqueue-heartbeat")
        self.dsn = dsn
        self.store = store
        self.worker_id = worker_id
        self.interval = lease / 4
        self.registration: Registration = {
            "id": worker_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(queues),
            "backlog": backlog,
            "lease": lease,
        }
        self._on_revoked = on_revoked
        self._on_stopped = on_stopped
        self._conn: Connection | None = None
        self._beat_at = 0.0

    def register(self, conn: Connection) -> None:
        """Write the worker's row (``REGISTER_WORKER``) on ``conn``, before the first beat."""
        self.store.register_worker(self.registration).run(conn)

    def sign_off(self) -> None:
        """Mark the worker's row stopped, on a connection of its own, after the last beat;
        a database that is gone is logged (the lease then covers the row)."""
        try:
            with _db.connect(self.dsn, application_name="pgqueue-worker") as conn:
                self.store.stop_worker(id=self.worker_id).run(conn)
        except Exception as exc:  # the database may be gone; the lease covers it
            logger.warning("could not mark worker %s stopped: %s", self.worker_id, exc)

    def first_delay(self) -> float:
        """The first beat comes one interval after the start (registration just beat)."""
        self._beat_at = time.monotonic()
        return self.interval

    def run_once(self) -> float:
        """Beat once; return the seconds until the next beat is due (fixed rate)."""
        self._beat_at = time.monotonic()
        if self._conn is None or self._conn.closed:
            self._conn = _db.connect(self.dsn, application_name="pgqueue-heartbeat")
        self._beat(self._conn)
        return self._next_beat()

    def on_error(self, exc: Exception) -> float:
        """A failed beat: log it, drop the connection, beat again at the next interval."""
        logger.warning("heartbeat failed: %s", first_line(exc))
        self.close()
        return self._next_beat()

    def close(self) -> None:
        """Close the heartbeat's connection (the next beat makes a new one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _next_beat(self) -> float:
        return max(self._beat_at + self.interval - time.monotonic(), 0.0)

    def _beat(self, conn: Connection) -> None:
        beat = self.store.heartbeat_worker(id=self.worker_id).run(conn)
        if beat is not None and beat["alive"]:
            for task_id in beat["revoked"]:
                self._on_revoked(task_id)
        elif self.store.reregister_worker(self.registration).run(conn):
            logger.error("the row of worker %s was deleted; registered again", self.worker_id)
        else:
            self._on_stopped()
