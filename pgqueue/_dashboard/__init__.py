"""pgqueue's web dashboard (``pgqueue dashboard``; needs the ``dashboard`` extra).

Server-rendered pages (Starlette and Jinja2, no JavaScript build step) with live updates
pushed from LISTEN/NOTIFY as server-sent events. See :func:`create_app` and :func:`serve`.
"""

from __future__ import annotations

import uvicorn

from .app import create_app

__all__ = ["create_app", "serve"]


def serve(
    dsn: str | None = None,
    *,
    schema: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    read_only: bool = False,
    token: str | None = None,
    read_dsn: str | None = None,
) -> None:
    """Serve the dashboard with uvicorn until interrupted (Ctrl-C or SIGTERM).

    Binds to loopback by default; callers exposing it elsewhere should pass ``token``
    (``pgqueue dashboard`` refuses to listen beyond loopback without one).
    """
    app = create_app(dsn, schema=schema, read_only=read_only, token=token, read_dsn=read_dsn)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=3)
