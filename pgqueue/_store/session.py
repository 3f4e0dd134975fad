"""Statements about a connection rather than the queue: the claimer's session setting, the
listener's LISTEN and liveness probe, the transaction-pooling probe, the schema's revision
check and the embedded server's settings."""

from __future__ import annotations

from typing import Any

import psycopg

from ._op import Op, StoreBase, quote_ident

#: The claimer's prepared statements keep one generic plan, never JIT-compiled (see
#: :func:`claim_session`).
CLAIM_SESSION = "SET plan_cache_mode = force_generic_plan; SET jit = off"

#: The listener's probe of a quiet connection.
PING = "SELECT 1"

#: Whether the schema holds a revision (the worker's and the tools' start-up check).
SCHEMA_HAS_REVISION = "SELECT count(*) AS n FROM {s}.schema_version WHERE revision = %(revision)s"

#: The server process serving a connection's current transaction.
BACKEND_PID = "SELECT pg_backend_pid() AS pid"

#: The pooling probe's notification, sent with the sender's server process.
NOTIFY_PROBE = "SELECT pg_notify(%(channel)s, 'probe'), pg_backend_pid() AS pid"

#: Whether the server is a standby (``standby``), whether this session may write
#: (``read_only``: a standby, or ``default_transaction_read_only``) and, on a standby, how many
#: seconds its data is behind the primary (``lag``): 0 while it has replayed all it received,
#: else the age of the last transaction it replayed (None before it replayed any).
SERVER_ROLE = """
SELECT pg_is_in_recovery() AS standby,
       current_setting('transaction_read_only')::boolean AS read_only,
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0::float8
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
       END AS lag
"""

#: One server setting, as text.
CURRENT_SETTING = "SELECT current_setting(%(name)s) AS v"


def claim_session(conn: psycopg.Connection[Any]) -> None:
    """Make ``conn``'s prepared statements keep one generic plan (``plan_cache_mode =
    force_generic_plan``), so a claim is planned once, not on every execution; and turn off
    PostgreSQL's JIT compilation (``jit = off``) for the session. A generic plan is costed
    without its parameters (``LIMIT $n`` as a tenth of the table), so on a server built with
    LLVM (Debian's and Ubuntu's packages: ``jit`` is on by default) a claim of a worker of
    several jobs passed ``jit_above_cost`` once the table held about 10,000 rows, and every
    claim spent ~0.9 s compiling a plan that runs in ~2 ms: 4 tasks/s."""
    conn.execute(CLAIM_SESSION)


def listen(conn: psycopg.Connection[Any], channel: str) -> None:
    """``LISTEN`` on ``channel`` (quoted as an identifier)."""
    conn.execute(f"LISTEN {quote_ident(channel)}")


def unlisten(conn: psycopg.Connection[Any], channel: str) -> None:
    """``UNLISTEN`` ``channel`` (quoted as an identifier)."""
    conn.execute(f"UNLISTEN {quote_ident(channel)}")


def backend_pid(conn: psycopg.Connection[Any]) -> int:
    """The pid of the server process running this transaction (``pg_backend_pid()``)."""
    row = conn.execute(BACKEND_PID).fetchone()
    return -1 if row is None else int(row["pid"] if isinstance(row, dict) else row[0])


def notify_probe(conn: psycopg.Connection[Any], channel: str) -> int:
    """``pg_notify(channel, 'probe')``; return the pid of the server process that sent it."""
    row = conn.execute(NOTIFY_PROBE, {"channel": channel}).fetchone()
    return -1 if row is None else int(row["pid"] if isinstance(row, dict) else row[1])


def ping(conn: psycopg.Connection[Any]) -> None:
    """Run a trivial statement (raises ``psycopg.Error`` when the connection is gone)."""
    conn.execute(PING)


def current_setting(conn: psycopg.Connection[Any], name: str) -> str | None:
    """The value of server setting ``name`` as text (None if it has none)."""
    row = conn.execute(CURRENT_SETTING, {"name": name}).fetchone()
    return None if row is None else str(row["v"] if isinstance(row, dict) else row[0])


def alter_system(conn: psycopg.Connection[Any], name: str, value: int) -> None:
    """``ALTER SYSTEM SET name = 'value'`` (``name`` quoted as an identifier, ``value`` an
    int); takes effect at the next restart or reload."""
    conn.execute(f"ALTER SYSTEM SET {quote_ident(name)} = '{int(value)}'")


def _first_row(found: list[Any], count: int) -> dict[str, Any]:
    return dict(found[0])


def _has_rows(found: list[Any], count: int) -> bool:
    return bool(found and found[0]["n"])


class SessionOps(StoreBase):
    """The schema's revision check and the server's role (see the module docstring)."""

    def server_role(self) -> Op[dict[str, Any]]:
        """``{"standby": bool, "read_only": bool, "lag": seconds or None}`` of the server
        (:data:`SERVER_ROLE`)."""
        return Op(SERVER_ROLE, {}, _first_row)

    def schema_has_revision(self, *, revision: str) -> Op[bool]:
        """Whether the schema's ``schema_version`` table records ``revision``. Raises
        ``psycopg.errors.UndefinedTable`` when the schema or table is missing."""
        return Op(self._sql(SCHEMA_HAS_REVISION), {"revision": revision}, _has_rows)
