"""The worker's two one-connection pools (the claimer's, which maintenance shares, and the
completer's): built closed with the worker, opened by :meth:`Worker.run` once the first
connection has probed what the server needs (:func:`pgqueue._db.connection_options`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .. import _db

Connection = psycopg.Connection[dict[str, Any]]

#: The options of the claimer's and the completer's connections, before
#: :func:`pgqueue._db.connection_options` adds what the probe found at :meth:`Worker.run`.
POOL_KWARGS: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}


def one_connection(
    dsn: str, application_name: str, configure: Callable[[Connection], None]
) -> ConnectionPool[Connection]:
    """A pool of exactly one autocommit connection for one thread of the worker, opened by
    :meth:`Worker.run`; it replaces the connection when a statement finds it broken. No
    check on checkout: a broken connection fails its statement instead
    (``OperationalError``: the claimer and the completer retry)."""
    return ConnectionPool(
        _db.conninfo(dsn, application_name),
        min_size=1,
        max_size=1,
        kwargs=dict(POOL_KWARGS),
        configure=configure,
        name=application_name,
        num_workers=1,
        open=False,
    )


def open_pools(dsn: str, pools: Iterable[ConnectionPool[Connection]]) -> None:
    """Open ``pools`` with the connection options the first connection to ``dsn`` probed."""
    options = _db.connection_options(dsn)  # probed by run()'s first connect
    for pool in pools:
        pool.kwargs = {**POOL_KWARGS, **options}
        pool.open()
