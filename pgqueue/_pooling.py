"""Whether a DSN reaches PostgreSQL through a transaction pooler (PgBouncer's
``pool_mode = transaction``), found out by a probe, once per DSN and process.

A transaction pooler hands each transaction of a client connection to whichever server
connection is free, so nothing that lives in a server session survives a commit: prepared
statements (psycopg prepares a statement run 5 times: "prepared statement _pg3_0 does not
exist"), ``SET``, advisory locks held between statements, and ``LISTEN``. The probe tests the
last one directly, as the listener needs it:

1. connection A runs ``LISTEN`` on a random channel (autocommit: the transaction ends) and
   ``pg_backend_pid()``; then, :data:`SESSION_CHECKS` times, B reads its
   ``pg_backend_pid()`` and A reads its own again;
2. connection B sends ``pg_notify`` on that channel and reads its own ``pg_backend_pid()``;
3. A runs ``pg_backend_pid()`` again and waits up to :data:`PROBE_WAIT` seconds for the
   notification.

Direct (or session pooling): B's server process is not A's, A keeps its own, and the
notification arrives within milliseconds. Through transaction pooling B usually gets the
server connection A just released (PgBouncer reuses the last one), which decides at once;
otherwise the notification never reaches A. One comparison is not enough behind a busy
pooler: another client can take A's server connection between A's transactions, so B gets
another one, and A can get its own back by chance, in time for the notification (a fleet of
30 workers through a pool of 5 had one of them conclude "direct", prepare statements and
die); each repeated pair of transactions makes that chance smaller. Where no notification
can be sent (a standby refuses LISTEN; a full NOTIFY queue refuses NOTIFY, F27) only the
server processes are compared. The probe's two connections prepare nothing.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, NamedTuple

import psycopg

from ._store import session

#: Seconds A waits for the probe's notification before concluding that LISTEN does not work.
PROBE_WAIT = 1.0
#: Pairs of transactions (B's, then A's) in which the server sessions are compared.
SESSION_CHECKS = 5


class Probe(NamedTuple):
    """What the probe found: ``pooled`` (session state does not survive a transaction) and
    ``why``, a phrase for the log."""

    pooled: bool
    why: str


_found: dict[str, Probe] = {}
_lock = threading.Lock()


def probe(conninfo: str) -> Probe:
    """Probe ``conninfo`` (see the module docstring) once per process; later calls return the
    first answer. Raises ``psycopg.OperationalError`` when the server cannot be reached."""
    with _lock:
        found = _found.get(conninfo)
        if found is None:
            found = _found[conninfo] = _run_probe(conninfo)
        return found


def _run_probe(conninfo: str) -> Probe:
    channel = f"pgqueue_probe_{uuid.uuid4().hex}"
    options: dict[str, Any] = {"autocommit": True, "prepare_threshold": None}
    with (
        psycopg.connect(conninfo, **options) as listener,
        psycopg.connect(conninfo, **options) as sender,
    ):
        try:
            session.listen(listener, channel)
        except psycopg.errors.ReadOnlySqlTransaction:
            return _by_sessions(listener, sender, "a standby (no LISTEN there)")
        first = session.backend_pid(listener)
        changed = _sessions_differ(listener, sender, first)
        if changed:
            return changed
        try:
            sent_by = session.notify_probe(sender, channel)
        except psycopg.errors.ProgramLimitExceeded:
            session.unlisten(listener, channel)
            return _by_sessions(listener, sender, "the NOTIFY queue is full")
        if sent_by == first:
            return Probe(True, "two client connections shared one server session")
        if session.backend_pid(listener) != first:
            return Probe(True, "the server session changed between two transactions")
        arrived = any(True for _ in listener.notifies(timeout=PROBE_WAIT, stop_after=1))
        session.unlisten(listener, channel)
    if not arrived:
        return Probe(True, f"a NOTIFY to a LISTENing connection did not arrive in {PROBE_WAIT}s")
    return Probe(False, "LISTEN/NOTIFY and the server session outlive a transaction")


def _by_sessions(
    listener: psycopg.Connection[Any], sender: psycopg.Connection[Any], where: str
) -> Probe:
    """The probe without a notification (``where`` says why none can be sent): the server
    processes of the two connections, and of one connection across two transactions."""
    first = session.backend_pid(listener)
    changed = _sessions_differ(listener, sender, first)
    if changed:
        return changed
    return Probe(False, f"the server sessions outlive a transaction ({where})")


def _sessions_differ(
    listener: psycopg.Connection[Any], sender: psycopg.Connection[Any], first: int
) -> Probe | None:
    """A pooled :class:`Probe` when, in :data:`SESSION_CHECKS` alternating transactions, the
    sender gets the listener's server process ``first`` or the listener another; else None."""
    for _ in range(SESSION_CHECKS):
        if session.backend_pid(sender) == first:
            return Probe(True, "two client connections shared one server session")
        if session.backend_pid(listener) != first:
            return Probe(True, "the server session changed between two transactions")
    return None
