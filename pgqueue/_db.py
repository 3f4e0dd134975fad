"""Connection settings: DSN resolution, password redaction, keepalives, connecting.

Every pgqueue connection is made here, so that each one has the same TCP keepalives
(a half-open connection is noticed within about 15 s), an ``application_name`` an operator
can find in ``pg_stat_activity``, and errors that never show the password.
"""

from __future__ import annotations

import os
import re
import select
from contextlib import suppress
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ._errors import ConfigurationError, ConnectionFailed, first_line
from ._pooling import Probe, probe
from ._store._op import quote_ident as quote_ident
from ._values import load_json

DSN_ENV = "PGQUEUE_DSN"
LISTEN_DSN_ENV = "PGQUEUE_LISTEN_DSN"
SCHEMA_ENV = "PGQUEUE_SCHEMA"
DEFAULT_SCHEMA = "pgqueue"

#: libpq settings added to every connection unless the DSN sets them: keepalive probes after
#: 5 s idle, every 2 s, 3 lost probes = dead (about 11 s); unacknowledged data for 10 s = dead.
KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
    "connect_timeout": "10",
}

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


#: libpq's own environment variables that name a server or database: with one of them set
#: and no DSN given, the empty DSN lets libpq connect as ``psql`` would (its environment,
#: ``~/.pgpass``, ``~/.pg_service.conf``).
LIBPQ_ENV = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


def resolve_dsn(dsn: str | None) -> str:
    """Return ``dsn``, else ``$PGQUEUE_DSN``, else ``""`` (libpq's own environment) when one
    of :data:`LIBPQ_ENV` is set; raise :class:`ConfigurationError` if none is.

    SQLAlchemy-style URLs (``postgresql+psycopg://``) are accepted and turned into libpq URLs.
    """
    value = dsn or os.environ.get(DSN_ENV)
    if not value:
        if any(os.environ.get(name) for name in LIBPQ_ENV):
            return ""
        raise ConfigurationError(
            f"no database given: pass a DSN (--dsn / dsn=), set {DSN_ENV} "
            "(e.g. postgresql://user@localhost/mydb), or libpq's PGHOST/PGDATABASE/PGSERVICE"
        )
    value = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", value)
    try:
        conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"invalid DSN {redact(value)}: {scrub(str(exc), value)}") from None
    return value


def resolve_listen_dsn(dsn: str | None) -> str | None:
    """The DSN the listener connects to: ``dsn``, else ``$PGQUEUE_LISTEN_DSN``, else None (the
    main DSN, or poll-only behind a transaction pooler: :func:`pgqueue._listener.listen_target`).
    Raises :class:`ConfigurationError` for a malformed DSN."""
    value = dsn or os.environ.get(LISTEN_DSN_ENV)
    return resolve_dsn(value) if value else None


def resolve_schema(schema: str | None) -> str:
    """Return the schema for pgqueue's objects: ``schema``, else ``$PGQUEUE_SCHEMA``, else
    ``pgqueue``. Raises :class:`ConfigurationError` unless it is a plain lower-case identifier.
    """
    value = schema or os.environ.get(SCHEMA_ENV) or DEFAULT_SCHEMA
    if not _SCHEMA_NAME.match(value):
        raise ConfigurationError(
            f"schema name {value!r} must be a lower-case SQL identifier (letters, digits, _)"
        )
    return value


#: Where a password sits in a DSN libpq cannot parse: ``scheme://user:PASSWORD@`` (up to the
#: last ``@`` before the path), and ``password=PASSWORD`` (quoted or not; URL queries too).
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)([^/?#]*)@")
_KEY_PASSWORD = re.compile(r"""(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]*)""", re.I)


def redact(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, safe for logs and error messages."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return _KEY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", dsn))
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def migrate_command(dsn: str, schema: str) -> str:
    """The ``pgqueue migrate`` command that creates or upgrades ``schema`` in ``dsn``'s
    database, password redacted, for the messages that advise it (``--schema`` when not the
    default)."""
    command = f"pgqueue migrate --dsn '{redact(dsn)}'" if dsn else "pgqueue migrate"
    return command if schema == DEFAULT_SCHEMA else f"{command} --schema {schema}"


#: Passwords shorter than this are hidden only where they stand alone (between characters
#: that are not letters or digits), not inside the words of a message.
SHORT_SECRET = 6


def scrub(message: str, dsn: str) -> str:
    """``message`` (e.g. a driver's error about ``dsn``) with every password that ``dsn``
    holds replaced by ``***``: libpq quotes the token it could not parse, password included."""
    secrets = [m.group(2) for m in _URL_PASSWORD.finditer(dsn)]
    secrets += [m.group(2).strip("'") for m in _KEY_PASSWORD.finditer(dsn)]
    with suppress(psycopg.ProgrammingError):
        secrets.append(conninfo_to_dict(dsn).get("password") or "")
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= SHORT_SECRET:
            message = message.replace(secret, "***")
        else:  # a short one only as a token of its own, or every "a" in the text would go
            token = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
            message = re.sub(token, "***", message)
    return message


def conninfo(dsn: str, application_name: str = "pgqueue") -> str:
    """The conninfo for ``dsn`` with pgqueue's keepalives and ``application_name`` added."""
    params: dict[str, Any] = dict(KEEPALIVES)
    params["application_name"] = application_name
    given = conninfo_to_dict(dsn)
    params.update({k: v for k, v in given.items() if v is not None})
    return make_conninfo(**params)


def pooling(dsn: str) -> Probe:
    """Whether ``dsn`` goes through a transaction pooler, by :mod:`pgqueue._pooling`'s probe
    (run once per DSN and process). Raises :class:`ConnectionFailed` when the server cannot be
    reached."""
    try:
        return probe(conninfo(dsn, "pgqueue-probe"))
    except psycopg.OperationalError as exc:
        raise ConnectionFailed(connection_error_message(dsn, exc)) from None


def connection_options(dsn: str) -> dict[str, Any]:
    """psycopg's connection options for ``dsn``: through a transaction pooler
    ``prepare_threshold=None`` (a statement prepared in one transaction is gone, or already
    there, in the next: "prepared statement _pg3_0 does not exist"); direct, none, so that
    psycopg prepares the statements run often (a measured speed-up of claims and finishes).
    Probes ``dsn`` on first use (see :func:`pooling`)."""
    return {"prepare_threshold": None} if pooling(dsn).pooled else {}


def connect(
    dsn: str, *, autocommit: bool = True, application_name: str = "pgqueue"
) -> psycopg.Connection[dict[str, Any]]:
    """Open one connection returning rows as dicts, configured by :func:`configure`, with
    :func:`connection_options` (no prepared statements through a transaction pooler).

    Raises :class:`ConnectionFailed` with a redacted DSN when the server cannot be reached.
    """
    try:
        conn = psycopg.connect(
            conninfo(dsn, application_name),
            autocommit=autocommit,
            row_factory=dict_row,
            **connection_options(dsn),
        )
    except psycopg.OperationalError as exc:
        raise ConnectionFailed(connection_error_message(dsn, exc)) from None
    configure(conn)
    return conn


def configure(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Set up a connection pgqueue opened (never a caller's): json and jsonb values are
    decoded by :func:`pgqueue._values.load_json`, several times faster than psycopg's default
    (a claim decodes two or three per task)."""
    set_json_loads(load_json, conn)


async def aconfigure(conn: psycopg.AsyncConnection[Any]) -> None:
    """:func:`configure` for an async pool's ``configure`` hook."""
    configure(conn)


def _unread_input(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True when the server sent something to an idle connection: its end closed the
    connection (restart, ``pg_terminate_backend``), the kernel gave up on it (keepalives),
    or a notice arrived. A healthy idle connection has nothing to read."""
    if conn.closed:
        return True
    poll = select.poll()  # not select.select: it refuses sockets numbered 1024 and above
    poll.register(conn.pgconn.socket, select.POLLIN)
    return bool(poll.poll(0))


def check_pooled(conn: psycopg.Connection[Any]) -> None:
    """The check of a connection a pool is about to hand out, without a round trip unless
    needed: when :func:`_unread_input` says something arrived, psycopg's own check runs (a
    query), which raises for a dead connection so the pool replaces it. A round trip on
    every checkout cost a fifth of a single enqueue."""
    if _unread_input(conn):
        ConnectionPool.check_connection(conn)


async def acheck_pooled(conn: psycopg.AsyncConnection[Any]) -> None:
    """:func:`check_pooled` for async pools."""
    if _unread_input(conn):
        await AsyncConnectionPool.check_connection(conn)


def is_connection_error(exc: psycopg.Error) -> bool:
    """True when ``exc`` means the connection failed or was lost (no SQLSTATE, class 08, or
    the server shutting down), not that the database refused a statement: deadlocks, lock
    and statement timeouts are ``OperationalError`` too."""
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")


def connection_error_message(dsn: str, exc: BaseException) -> str:
    """A one-paragraph explanation of a connection failure, with the DSN redacted."""
    detail = scrub(first_line(exc), dsn)
    where = redact(dsn) or "the server libpq's environment (PGHOST, PGSERVICE, ...) names"
    return (
        f"cannot connect to PostgreSQL at {where}: {detail}. "
        "Check that the server is running and that the DSN (host, port, user, database) is right."
    )
