"""The dashboard's pages and actions (Starlette routes, Jinja2 templates rendered on the server).

Pages: ``/`` (queues: depth and throughput over the last hour, stuck tasks), ``/tasks`` (a
filtered list), ``/tasks/{id}`` (one task: arguments, result, traceback, timeline, actions),
``/workers``, ``/schedules``; ``/events`` streams live updates. Actions (POST
``/tasks/{id}/retry`` and ``/revoke``) are refused when read-only and checked against
cross-site requests. A request that sends ``X-Fragment: live`` gets only the page's live part,
which the page's script swaps in when an event arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import _db, states
from .._format import format_seconds
from .._ops import ActionRefused, Operations, parse_duration
from ..backend import TaskBackend
from ..errors import ConfigurationError, PgQueueError, TaskNotFound
from . import charts, security
from .events import EventHub

#: How many tasks the task list shows unless asked for another number.
DEFAULT_LIMIT = 100
#: Seconds between re-reads of the queue names the event hub follows.
QUEUE_REFRESH = 15.0


def create_app(
    dsn: str | None = None,
    *,
    schema: str | None = None,
    read_only: bool = False,
    token: str | None = None,
    read_dsn: str | None = None,
) -> Starlette:
    """The dashboard as an ASGI application.

    :param dsn: the database (None: ``$PGQUEUE_DSN``); its password is never shown.
    :param read_only: show everything, refuse every action (403).
    :param token: when set, every request must carry it (HTTP basic password or Bearer).
    :param read_dsn: read the pages from this DSN (a streaming standby) instead; every page
        says how far behind the primary it is. Actions still go to ``dsn``.

    Connections: a pool of 2 for the pages, plus 1 LISTEN connection for live updates
    (through ``$PGQUEUE_LISTEN_DSN`` when set; none behind a transaction pooler without it:
    the pages then re-render every few seconds, :mod:`pgqueue.dashboard.events`).
    Raises :class:`ConfigurationError` for a missing or malformed DSN, or an empty token.
    """
    if token is not None and not token.strip():
        raise ConfigurationError("the dashboard token is empty: every page would be unguarded")
    backend = TaskBackend(dsn, schema=schema, pool_size=2)
    reader = TaskBackend(read_dsn, schema=schema, pool_size=2) if read_dsn else None
    ops = Operations(backend, reader)
    hub = EventHub(backend.dsn, backend.listen_dsn)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pgqueue.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["seconds"] = format_seconds
    env.filters["stamp"] = _stamp
    env.globals["state_names"] = list(states.NAMES.values())
    templates = Jinja2Templates(env=env)
    database = _db.redact(backend.dsn)
    if reader is not None:
        database += f", read from {_db.redact(reader.dsn)}"

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        fragment = request.headers.get("x-fragment") == "live"
        csrf = security.csrf_token(request)
        context = {
            "fragment": fragment,
            "read_only": read_only,
            "database": database + (f" ({stale})" if reader and (stale := ops.staleness()) else ""),
            "csrf": csrf,
            "message": request.query_params.get("message"),
            "problem": request.query_params.get("problem"),
            **context,
        }
        response = templates.TemplateResponse(request, name, context, status_code=status)
        if request.cookies.get(security.CSRF_COOKIE) != csrf:
            response.set_cookie(
                security.CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/"
            )
        response.headers["Cache-Control"] = "no-store"
        return response

    def overview(request: Request) -> Response:
        summary = ops.overview()
        hub.watch(row["queue"] for row in summary.queues)
        return page(
            request,
            "overview.html",
            {
                "overview": summary,
                "charts": charts.queue_charts(ops.timeline()),
                "chart_width": charts.WIDTH,
                "chart_height": charts.HEIGHT,
            },
        )

    def task_list(request: Request) -> Response:
        query = request.query_params
        filters = {
            "state": query.get("state", ""),
            "job": query.get("job", "").strip(),
            "queue": query.get("queue", "").strip(),
            "since": query.get("since", "").strip(),
            "limit": query.get("limit", str(DEFAULT_LIMIT)).strip(),
        }
        problem = None
        rows: list[dict[str, Any]] = []
        try:
            limit = int(filters["limit"]) if filters["limit"].isdigit() else -1
            rows = ops.list_tasks(
                states_=[filters["state"]] if filters["state"] else [],
                jobs=[filters["job"]] if filters["job"] else [],
                queues=[filters["queue"]] if filters["queue"] else [],
                since=parse_duration(filters["since"], "since") if filters["since"] else None,
                limit=limit,
            )
        except ConfigurationError as exc:
            problem = str(exc)
        hub.watch(row["queue"] for row in rows)
        return page(
            request,
            "tasks.html",
            {"tasks": rows, "filters": filters, "filter_problem": problem},
            status=400 if problem else 200,
        )

    def task_page(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            task = ops.task(task_id)
        except (TaskNotFound, ConfigurationError) as exc:
            return page(
                request, "missing.html", {"heading": "Not found", "reason": str(exc)}, status=404
            )
        hub.watch([task["queue"]])
        return page(request, "task.html", {"task": task, "timeline": _timeline(task)})

    def workers(request: Request) -> Response:
        rows = ops.workers(recent=None if request.query_params.get("all") else 3600.0)
        return page(request, "workers.html", {"workers": rows})

    def schedules(request: Request) -> Response:
        return page(request, "schedules.html", {"schedules": ops.schedules()})

    def action(
        run: Callable[[str], dict[str, Any]], done: Callable[[dict[str, Any]], str]
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            task_id = request.path_params["task_id"]
            if read_only:
                return Response("this dashboard is read-only\n", status_code=403)
            form = await request.form()
            submitted = form.get(security.CSRF_FIELD)
            problem = security.csrf_problem(
                request, submitted if isinstance(submitted, str) else None
            )
            if problem:
                return Response(problem + "\n", status_code=403)
            try:
                task = await run_in_threadpool(run, task_id)
            except (ActionRefused, TaskNotFound, ConfigurationError) as exc:
                return _back(request, task_id, problem=str(exc))
            return _back(request, task_id, message=done(task))

        return endpoint

    async def events(request: Request) -> Response:
        return StreamingResponse(
            hub.stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.start(asyncio.get_running_loop())
        refresher = asyncio.create_task(_follow_queues(ops, hub))
        try:
            yield
        finally:
            refresher.cancel()
            hub.stop()
            backend.close()
            if reader is not None:
                reader.close()

    routes = [
        Route("/", overview, name="overview"),
        Route("/tasks", task_list, name="tasks"),
        Route("/tasks/{task_id}", task_page, name="task"),
        Route("/tasks/{task_id}/retry", action(ops.retry, _retried), methods=["POST"]),
        Route("/tasks/{task_id}/revoke", action(ops.revoke, _revoked), methods=["POST"]),
        Route("/workers", workers, name="workers"),
        Route("/schedules", schedules, name="schedules"),
        Route("/events", events, name="events"),
        Mount(
            "/static",
            StaticFiles(directory=str(files("pgqueue.dashboard") / "static")),
            name="static",
        ),
    ]

    async def unavailable(request: Request, exc: Exception) -> Response:
        return page(
            request, "missing.html", {"heading": "Unavailable", "reason": str(exc)}, status=503
        )

    middleware = [Middleware(security.TokenAuth, token=token)] if token is not None else []
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={PgQueueError: unavailable},
    )


async def _follow_queues(ops: Operations, hub: EventHub) -> None:
    """Keep the hub listening to every queue that has live tasks or workers."""
    while True:
        try:
            queues = await run_in_threadpool(ops.queue_names)
            hub.watch(queues)
        except Exception:  # the database may be away; the pages say so, retry later
            pass
        await asyncio.sleep(QUEUE_REFRESH)


def _retried(task: dict[str, Any]) -> str:
    return "queued again"


def _revoked(task: dict[str, Any]) -> str:
    if task["revoke"] == states.RevokeResult.STOP_REQUESTED.value:
        return (
            "revoke requested: the task was running; it ends REVOKED if its job stops "
            f"(SUCCESS if it returns normally all the same); now {task['state']}"
        )
    return "revoked: it will not run"


def _back(request: Request, task_id: str, **note: str) -> Response:
    url = request.url_for("task", task_id=task_id).path
    return RedirectResponse(f"{url}?{urlencode(note)}", status_code=303)


def _stamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC" if value else "-"


def _timeline(task: dict[str, Any]) -> list[tuple[str, datetime, str]]:
    """The task's known moments in order: (what, when, how long after the previous one)."""
    moments = [
        ("queued", task["time_queued"]),
        ("due", task["run_at"]),
        ("started", task["time_started"]),
        ("revoke requested", task["revoke_requested_at"]),
        (f"ended {task['state']}", task["time_ended"]),
    ]
    known = sorted((m for m in moments if m[1] is not None), key=lambda m: m[1])
    out = []
    previous: datetime | None = None
    for what, when in known:
        gap = format_seconds(when - previous) if previous is not None else ""
        out.append((what, when, f"+{gap}" if gap else ""))
        previous = when
    return out
