"""The heartbeat: a worker's thread that proves, every ``lease/4`` seconds, that it lives.

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
from collections.abc import Callable
from typing import Any

import psycopg

from . import _db
from ._background import BackgroundThread
from ._store import Store
from ._store.workers import Registration
from .errors import first_line

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]


class Heartbeat(BackgroundThread):
    """Beats for worker ``worker_id`` every ``interval`` seconds until :meth:`stop`.

    :param registration: the worker's row (as :meth:`Store.register_worker` takes it), to
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
        store: Store,
        worker_id: str,
        interval: float,
        registration: Registration,
        on_revoked: Callable[[str], None],
        on_stopped: Callable[[], None],
    ) -> None:
        self.dsn = dsn
        self.store = store
        self.worker_id = worker_id
        self.interval = interval
        self.registration = registration
        self._on_revoked = on_revoked
        self._on_stopped = on_stopped
        super().__init__("pgqueue-heartbeat")

    def _run(self) -> None:
        conn: Connection | None = None
        beat_at = time.monotonic()
        while not self._stop.wait(max(beat_at + self.interval - time.monotonic(), 0.0)):
            beat_at = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = _db.connect(self.dsn, application_name="pgqueue-heartbeat")
                self._beat(conn)
            except Exception as exc:
                logger.warning("heartbeat failed: %s", first_line(exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _beat(self, conn: Connection) -> None:
        beat = self.store.heartbeat_worker(id=self.worker_id).run(conn)
        if beat is not None and beat["alive"]:
            for task_id in beat["revoked"]:
                self._on_revoked(task_id)
        elif self.store.reregister_worker(self.registration).run(conn):
            logger.error("the row of worker %s was deleted; registered again", self.worker_id)
        else:
            self._on_stopped()
