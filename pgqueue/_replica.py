"""Primary or standby: which server a DSN reached, how stale a standby is, and the start-up
check that a worker or client which writes did not get a read-only one.

Operators may read off the primary (``--read-dsn``: ``pgqueue status/list/show``, the
dashboard, the metrics' queue depth) from a streaming standby; what they read is then as old
as the standby's replay (``now() - pg_last_xact_replay_timestamp()``, 0 while it has replayed
everything it received), and every such read says so.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ._db import redact
from ._errors import ConfigurationError
from ._store import Store


def staleness(conn: psycopg.Connection[Any], store: Store) -> str | None:
    """None on a primary; on a standby one phrase saying how far behind it is."""
    role = store.server_role().run(conn)
    if not role["standby"]:
        return None
    lag = role["lag"]
    behind = "lag unknown: nothing replayed yet" if lag is None else f"{lag:.1f}s behind"
    return f"read from a standby ({behind} the primary)"


def require_writable(conn: psycopg.Connection[Any], store: Store, dsn: str) -> None:
    """Raise :class:`ConfigurationError` naming the fix when ``conn`` (to ``dsn``) cannot
    write: a standby (``pg_is_in_recovery()``) or a read-only session
    (``transaction_read_only``)."""
    role = store.server_role().run(conn)
    if role["standby"] or role["read_only"]:
        what = (
            "a standby (pg_is_in_recovery())"
            if role["standby"]
            else "a read-only session (default_transaction_read_only)"
        )
        raise ConfigurationError(read_only_message(dsn, what))


def read_only_message(dsn: str, what: str) -> str:
    """Why ``dsn``, which reaches ``what`` (a standby, a read-only session), cannot take
    pgqueue's writes, and what to give instead."""
    return (
        f"the DSN {redact(dsn) or '(libpq environment)'} reaches {what}: workers and enqueue "
        "need the primary. Give the primary's DSN (with several hosts, add "
        "target_session_attrs=read-write); a replica belongs in --read-dsn / PGQUEUE_READ_DSN"
    )
