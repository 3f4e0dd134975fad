"""The heartbeat: a worker's service that proves, every ``lease/4`` seconds, that it lives.

Each beat is one statement on the heartbeat's own connection (``HEARTBEAT_WORKER``): it sets
``heartbeat_at = now()`` on the worker's row, says whether that row is still live, and lists
the worker's running tasks whose revoke was requested, which catches revoke notifications
missed while the listener reconnected. A busy claimer or a job holding the GIL in bursts
cannot starve it, and beats keep a fixed rate: time spent waiting for the GIL is not added to
the interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import psycopg

from .. import _db
from .._service import Service
from .._sql import Statements
from ..errors import first_line

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]


class Heartbeat(Service):
    """Beats for worker ``worker_id`` every ``interval`` seconds until :meth:`stop`.

    :param registration: the worker's row (the parameters of ``REGISTER_WORKER``), to
        register again if the row was deleted (pruned by mistake).
    :param on_revoked: called with the id of each running task whose revoke was requested.
    :param on_stopped: called when the row was marked stopped by someone else (its tasks are
        being rescued, so the worker must stop claiming).

    The first beat comes one interval after :meth:`start`; :meth:`stop` ends the beats and
    closes the connection. A failed beat is logged and the connection made anew at the next.
    """

    def __init__(
        self,
        dsn: str,
        sql: Statements,
        worker_id: str,
        interval: float,
        registration: Mapping[str, Any],
        on_revoked: Callable[[str], None],
        on_stopped: Callable[[], None],
    ) -> None:
        super().__init__("pgqueue-heartbeat")
        self.dsn = dsn
        self.sql = sql
        self.worker_id = worker_id
        self.interval = interval
        self.registration = registration
        self._on_revoked = on_revoked
        self._on_stopped = on_stopped
        self._conn: Connection | None = None
        self._beat_at = 0.0

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
        beat = conn.execute(self.sql.heartbeat_worker, {"id": self.worker_id}).fetchone()
        if beat is not None and beat["alive"]:
            for task_id in beat["revoked"]:
                self._on_revoked(task_id)
        elif conn.execute(self.sql.reregister_worker, dict(self.registration)).fetchone():
            logger.error("the row of worker %s was deleted; registered again", self.worker_id)
        else:
            self._on_stopped()
