"""The heartbeat: a worker's service that proves, every ``lease/4`` seconds, that it lives.

It owns the worker's row: :meth:`Heartbeat.register` writes it at the start,
:meth:`Heartbeat.sign_off` marks it stopped at the end.

Each beat is one statement on the heartbeat's own connection (``HEARTBEAT_WORKER``): it sets
``heartbeat_at = now()`` on the worker's row, says whether that row is still live, lists
the worker's running tasks whose revoke was requested, which catches revoke notifications
missed while the listener reconnected, and lists which of the executions the worker still
runs (sent with the beat: ids and attempts) are no longer STARTED under it on that attempt,
so a worker that was frozen past its lease learns at its first beat after it resumes that
those tasks were rescued, and stops them (F21). A busy claimer or a job holding the GIL in
bursts cannot starve it, and beats keep a fixed rate: time spent waiting for the GIL is not
added to the interval.

A beat never waits long for a lock on the worker's row (another session's open transaction,
F23): its transaction sets ``lock_timeout`` (:data:`LOCK_TIMEOUT`, at most half an interval)
with ``SET LOCAL``, and a beat that times out warns and tries again at once, so it is first
in line when the lock is released; meanwhile no sweep rescues the tasks of a worker whose row
is locked.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import psycopg

from .. import _db
from .._errors import first_line
from .._service import Service
from .._store import Store
from .._store.workers import Registration

logger = logging.getLogger("pgqueue.worker")

Connection = psycopg.Connection[dict[str, Any]]

#: The longest one beat waits for a lock on the worker's row (seconds; at most half the
#: interval): past it the beat is tried again, with a warning.
LOCK_TIMEOUT = 1.0

#: The executions the worker still runs, as ``(task id, attempt)``.
Held = Callable[[], Sequence[tuple[str, int]]]


class Heartbeat(Service):
    """Beats for worker ``worker_id`` every ``lease/4`` seconds until :meth:`stop`.

    :param lease: seconds after the last beat after which the worker counts as lost.
    :param queues: the queues the worker claims from, and ``backlog`` its most tasks at once
        (written in its row; the row is written again if it was deleted, pruned by mistake).
    :param on_revoked: called with the id of each running task whose revoke was requested.
    :param on_stopped: called when the row was marked stopped by someone else (its tasks are
        being rescued, so the worker must stop claiming and stop what it runs).
    :param held: returns the executions the worker still runs (task id, attempt), sent with
        each beat.
    :param on_lost: called with those of them, ``(task id, attempt)``, that are no longer the
        worker's (rescued while it was frozen past its lease, F21).

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
        held: Held | None = None,
        on_lost: Callable[[list[tuple[str, int]]], None] | None = None,
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
        self._held: Held = held or tuple
        self._on_lost = on_lost or (lambda runs: None)
        self.lock_timeout = min(LOCK_TIMEOUT, self.interval / 2)
        #: ``time.monotonic()`` of the last beat that committed (or of the registration).
        self.beaten_at = time.monotonic()
        self._blocked_since: float | None = None
        self._warned_at = 0.0
        self._conn: Connection | None = None
        self._beat_at = 0.0

    def register(self, conn: Connection) -> None:
        """Write the worker's row (``REGISTER_WORKER``) on ``conn``, before the first beat."""
        self.store.register_worker(self.registration).run(conn)
        self.beaten_at = time.monotonic()

    def sign_off(self) -> None:
        """Mark the worker's row stopped and delete its waiter rows, on a connection of its
        own, after the last beat; a database that is gone is logged (the lease then covers the
        row)."""
        try:
            with _db.connect(self.dsn, application_name="pgqueue-worker") as conn:
                # It waits for work no more; a role that may not say so leaves its waiter
                # rows to expire (see pgqueue._store.waiters).
                with suppress(psycopg.errors.InsufficientPrivilege):
                    self.store.stop_waiting(worker=self.worker_id).run(conn)
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
        try:
            self._beat(self._conn)
        except psycopg.errors.LockNotAvailable:
            return self._blocked()
        if self._blocked_since is not None:
            logger.warning(
                "heartbeat of worker %s went through again after %.1fs blocked",
                self.worker_id,
                time.monotonic() - self._blocked_since,
            )
            self._blocked_since = None
        return self._next_beat()

    def _blocked(self) -> float:
        """A beat waited :attr:`lock_timeout` for the worker's row: warn (once a lease while
        it lasts) and try again at once, to be first in line when the lock is released."""
        now = time.monotonic()
        if self._blocked_since is None or now - self._warned_at >= self.interval * 4:
            if self._blocked_since is None:
                self._blocked_since = now
            self._warned_at = now
            logger.warning(
                "heartbeat of worker %s blocked: another session holds a lock on its row in "
                "%s.worker (waited %.2fs; an open transaction?); retrying at once, its tasks "
                "are not rescued while the row is locked",
                self.worker_id,
                self.store.schema,
                self.lock_timeout,
            )
        return 0.0

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
        held = list(self._held())
        with conn.transaction():
            self.store.heartbeat_lock_timeout(seconds=self.lock_timeout).run(conn)
            beat = self.store.heartbeat_worker(
                id=self.worker_id, ids=[h[0] for h in held], attempts=[h[1] for h in held]
            ).run(conn)
            alive = beat is not None and beat["alive"]
            again = not alive and self.store.reregister_worker(self.registration).run(conn)
        self.beaten_at = time.monotonic()
        if beat is not None and beat["lost"]:  # first: a stale execution must not go on
            self._on_lost(list(zip(beat["lost"], beat["lost_attempts"], strict=True)))
        if alive:
            assert beat is not None
            for task_id in beat["revoked"]:
                self._on_revoked(task_id)
        elif again:
            logger.error("the row of worker %s was deleted; registered again", self.worker_id)
        else:
            self._on_stopped()
