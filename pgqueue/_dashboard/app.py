"""The dashboard's pages and actions (Starlette routes, Jinja2 templates rendered on the server).

Pages: ``/`` (queues: finished tasks and depth over the last hour, day or week, counts, flow
control (paused or not, concurrency and rate limits, with a pause/resume button), stuck
tasks), ``/tasks`` (a filtered, sorted, paged list; ``?id=`` opens a task by id prefix),
``/tasks/{id}`` (one task, by id or unique prefix: arguments, result, traceback, timeline,
earlier attempts, actions), ``/workers``, ``/schedules``, ``/actions`` (the audit trail);
``/events`` streams live updates. Actions (POST ``/tasks/{id}/retry``, ``/revoke``,
``/run-now``, ``/grant``; ``/bulk/retry-failed`` and ``/bulk/revoke``, which first answer
with a confirmation page giving the count; ``/schedules/{name}/pause``, ``/resume`` and
``/trigger``; ``/queues/{name}/pause`` and ``/resume``) are refused when read-only, checked against
cross-site requests and recorded in the audit trail. A request that sends ``X-Fragment: live``
gets only the page's live part, which the page's script swaps in when an event arrives. Links
are relative to the ASGI ``root_path``, so the app can be mounted under a path prefix.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import _db, states
from .._backend import TaskBackend
from .._errors import ConfigurationError, PgQueueError, TaskNotFound
from .._format import format_seconds
from .._ops import COUNT_CAP, SPANS, ActionRefused, Operations, parse_duration
from . import charts, graph, security
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
    the pages then re-render every few seconds, :mod:`pgqueue._dashboard.events`).
    Raises :class:`ConfigurationError` for a missing or malformed DSN, or an empty token.
    """
    if token is not None and not token.strip():
        raise ConfigurationError("the dashboard token is empty: every page would be unguarded")
    backend = TaskBackend(dsn, schema=schema, pool_size=2)
    reader = TaskBackend(read_dsn, schema=schema, pool_size=2) if read_dsn else None
    ops = Operations(backend, reader)
    hub = EventHub(backend.dsn, backend.listen_dsn)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pgqueue._dashboard", "templates"),
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
        base = request.scope.get("root_path", "").rstrip("/")
        context = {
            "base": base,
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
                security.CSRF_COOKIE, csrf, httponly=True, samesite="strict", path=base or "/"
            )
        response.headers["Cache-Control"] = "no-store"
        return response

    def overview(request: Request) -> Response:
        summary = ops.overview()
        hub.watch(row["queue"] for row in summary.queues)
        span = request.query_params.get("range", "hour")
        span = span if span in SPANS else "hour"
        if span == "hour":
            drawn = charts.queue_charts(ops.timeline())
        else:
            drawn = charts.queue_charts(ops.activity(span, roll_up=not read_only), "%a %H:%M")
        return page(
            request,
            "overview.html",
            {
                "overview": summary,
                "span": span,
                "spans": list(SPANS),
                "charts": drawn,
                "chart_width": charts.WIDTH,
                "chart_height": charts.HEIGHT,
            },
        )

    def task_list(request: Request) -> Response:
        query = request.query_params
        wanted = query.get("id", "").strip()
        if wanted:  # a task id or a unique prefix: straight to its page
            try:
                found = ops.resolve_id(wanted)
            except (TaskNotFound, ConfigurationError) as exc:
                return _list_page(request, page, hub, ops, problem=str(exc))
            return RedirectResponse(request.url_for("task", task_id=found).path, status_code=303)
        return _list_page(request, page, hub, ops)

    def task_page(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            task = ops.task(task_id)
        except (TaskNotFound, ConfigurationError) as exc:
            return page(
                request, "missing.html", {"heading": "Not found", "reason": str(exc)}, status=404
            )
        # Parents and children may live in other queues: their ends redraw the graph too.
        hub.watch(
            sorted({task["queue"], *(t["queue"] for t in task["parents"] + task["children"])})
        )
        context = {
            "task": task,
            "timeline": _timeline(task),
            "attempts": ops.attempts(task["id"]),
            "graph": graph.workflow_graph(task),
            "box_width": graph.BOX_WIDTH,
            "box_height": graph.BOX_HEIGHT,
        }
        return page(request, "task.html", context)

    def actions(request: Request) -> Response:
        return page(request, "actions.html", {"actions": ops.actions()})

    def workers(request: Request) -> Response:
        rows = ops.workers(recent=None if request.query_params.get("all") else 3600.0)
        return page(request, "workers.html", {"workers": rows})

    def schedules(request: Request) -> Response:
        return page(request, "schedules.html", {"schedules": ops.schedules()})

    def action(
        run: Callable[..., dict[str, Any]],
        done: Callable[[dict[str, Any]], str],
        extra: Callable[[Any], dict[str, Any]] | None = None,
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
                more = extra(form) if extra else {}
                task = await run_in_threadpool(run, task_id, actor=_actor(request), **more)
            except (ActionRefused, TaskNotFound, ConfigurationError) as exc:
                return _back(request, task_id, problem=str(exc))
            return _back(request, task_id, message=done(task))

        return endpoint

    async def guarded_form(request: Request) -> tuple[Any, Response | None]:
        """The form of an action POST, or the refusal (read-only, cross-site)."""
        if read_only:
            return None, Response("this dashboard is read-only\n", status_code=403)
        form = await request.form()
        submitted = form.get(security.CSRF_FIELD)
        problem = security.csrf_problem(request, submitted if isinstance(submitted, str) else None)
        if problem:
            return None, Response(problem + "\n", status_code=403)
        return form, None

    async def bulk_retry(request: Request) -> Response:
        form, refused = await guarded_form(request)
        if refused is not None:
            return refused
        job, queue = str(form.get("job", "")).strip(), str(form.get("queue", "")).strip()
        jobs, queues = [job] if job else [], [queue] if queue else []
        back = {"state": "FAILURE", "job": job, "queue": queue}
        try:
            if form.get("confirm") != "yes":
                count = await run_in_threadpool(
                    lambda: ops.count_tasks(states_=["FAILURE"], jobs=jobs, queues=queues)
                )
                what = f"job {job or 'any'} in queue {queue or 'any'}"
                return page(
                    request,
                    "confirm.html",
                    {
                        "question": f"Retry {_count_text(count)} FAILURE tasks of {what}?",
                        "fields": {"job": job, "queue": queue},
                        "button": f"Retry {_count_text(count)} tasks",
                        "count": count,
                    },
                )
            ids = await run_in_threadpool(
                lambda: ops.retry_failed(jobs=jobs, queues=queues, actor=_actor(request))
            )
        except ConfigurationError as exc:
            return _to_list(request, back, problem=str(exc))
        return _to_list(request, back, message=f"{len(ids):,} tasks queued again")

    async def bulk_revoke(request: Request) -> Response:
        form, refused = await guarded_form(request)
        if refused is not None:
            return refused
        ids = [str(v) for v in form.getlist("ids")]
        try:
            if not ids:
                raise ConfigurationError("no task selected: tick the tasks to revoke")
            if form.get("confirm") != "yes":
                return page(
                    request,
                    "confirm.html",
                    {
                        "question": f"Revoke the {len(ids):,} selected tasks?",
                        "fields": {"ids": ids},
                        "button": f"Revoke {len(ids):,} tasks",
                        "count": len(ids),
                    },
                )
            revoked = await run_in_threadpool(lambda: ops.revoke_many(ids, actor=_actor(request)))
        except ConfigurationError as exc:
            return _to_list(request, {}, problem=str(exc))
        return _to_list(request, {}, message=f"{len(revoked):,} of {len(ids):,} tasks revoked")

    schedule_actions: dict[str, tuple[Callable[..., dict[str, Any]], Callable[..., str]]] = {
        "pause": (ops.pause_schedule, lambda row: "paused: its ticks are skipped until resumed"),
        "resume": (ops.resume_schedule, lambda row: "resumed"),
        "trigger": (ops.trigger_schedule, _triggered),
    }

    async def schedule_action(request: Request) -> Response:
        _form, refused = await guarded_form(request)
        if refused is not None:
            return refused
        name, verb = request.path_params["name"], request.path_params["verb"]
        url = request.url_for("schedules").path
        if verb not in schedule_actions:
            return Response(f"no schedule action {verb!r}\n", status_code=404)
        run, done = schedule_actions[verb]
        try:
            row = await run_in_threadpool(lambda: run(name, actor=_actor(request)))
        except ConfigurationError as exc:
            return RedirectResponse(f"{url}?{urlencode({'problem': str(exc)})}", status_code=303)
        note = {"message": f"schedule {name}: {done(row)}"}
        return RedirectResponse(f"{url}?{urlencode(note)}", status_code=303)

    queue_actions: dict[str, tuple[Callable[..., dict[str, Any]], str]] = {
        "pause": (ops.pause_queue, "paused: workers start none of its tasks until it is resumed"),
        "resume": (ops.resume_queue, "resumed"),
    }

    async def queue_action(request: Request) -> Response:
        _form, refused = await guarded_form(request)
        if refused is not None:
            return refused
        name, verb = request.path_params["name"], request.path_params["verb"]
        url = request.url_for("overview").path
        if verb not in queue_actions:
            return Response(f"no queue action {verb!r}\n", status_code=404)
        run, done = queue_actions[verb]
        try:
            await run_in_threadpool(lambda: run(name, actor=_actor(request)))
        except ConfigurationError as exc:  # UnknownQueue included
            return RedirectResponse(f"{url}?{urlencode({'problem': str(exc)})}", status_code=303)
        note = {"message": f"queue {name}: {done}"}
        return RedirectResponse(f"{url}?{urlencode(note)}", status_code=303)

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
        Route("/tasks/{task_id}/run-now", action(ops.run_now, _ran_now), methods=["POST"]),
        Route(
            "/tasks/{task_id}/grant",
            action(ops.grant_attempts, _granted, _more),
            methods=["POST"],
        ),
        Route("/actions", actions, name="actions"),
        Route("/bulk/retry-failed", bulk_retry, methods=["POST"]),
        Route("/bulk/revoke", bulk_revoke, methods=["POST"]),
        Route("/workers", workers, name="workers"),
        Route("/schedules", schedules, name="schedules"),
        Route("/schedules/{name}/{verb}", schedule_action, methods=["POST"]),
        Route("/queues/{name}/{verb}", queue_action, methods=["POST"]),
        Route("/events", events, name="events"),
        Mount(
            "/static",
            StaticFiles(directory=str(files("pgqueue._dashboard") / "static")),
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


#: The sort orders the task list offers: (value, label).
SORTS = [
    ("changed", "latest change first"),
    ("changed_asc", "oldest change first"),
    ("queued", "latest queued first"),
    ("queued_asc", "oldest queued first"),
]


def _list_page(
    request: Request,
    page: Callable[..., Response],
    hub: EventHub,
    ops: Operations,
    problem: str | None = None,
) -> Response:
    """The task list: filters (several states at once, job, queue, changed within, arguments
    as a JSON object the kwargs contain), one page of ``limit`` rows in a chosen order, and
    the bounded total (:data:`pgqueue._ops.COUNT_CAP`)."""
    query = request.query_params
    filters: dict[str, Any] = {
        "states": [s for s in query.getlist("state") if s],
        "job": query.get("job", "").strip(),
        "queue": query.get("queue", "").strip(),
        "since": query.get("since", "").strip(),
        "args": query.get("args", "").strip(),
        "sort": query.get("sort", "changed"),
        "limit": query.get("limit", str(DEFAULT_LIMIT)).strip(),
        "id": query.get("id", "").strip(),
    }
    number = int(query["page"]) if query.get("page", "").isdigit() else 1
    number = max(number, 1)
    rows: list[dict[str, Any]] = []
    total = 0
    limit = DEFAULT_LIMIT
    if problem is None:
        try:
            limit = int(filters["limit"]) if filters["limit"].isdigit() else -1
            chosen: dict[str, Any] = {
                "states_": filters["states"],
                "jobs": [filters["job"]] if filters["job"] else [],
                "queues": [filters["queue"]] if filters["queue"] else [],
                "since": parse_duration(filters["since"], "since") if filters["since"] else None,
                "args": filters["args"] or None,
            }
            rows = ops.list_tasks(
                **chosen, limit=limit, offset=(number - 1) * limit, order=filters["sort"]
            )
            total = ops.count_tasks(**chosen)
        except ConfigurationError as exc:
            problem = str(exc)
    hub.watch(row["queue"] for row in rows)
    pages = max(1, -(-min(total, COUNT_CAP - 1) // limit)) if limit > 0 else 1

    def page_url(n: int) -> str:
        kept = [(k, v) for k, v in query.multi_items() if k != "page"]
        return "?" + urlencode([*kept, ("page", str(n))])

    return page(
        request,
        "tasks.html",
        {
            "tasks": rows,
            "filters": filters,
            "filter_problem": problem,
            "sorts": SORTS,
            "total": total,
            "total_text": f"{COUNT_CAP - 1:,}+" if total >= COUNT_CAP else f"{total:,}",
            "page_number": number,
            "pages": pages,
            "more": total >= COUNT_CAP,
            "first_row": (number - 1) * max(limit, 0) + 1,
            "page_url": page_url,
        },
        status=400 if problem else 200,
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


def _triggered(row: dict[str, Any]) -> str:
    """What a schedule's trigger did (:meth:`Operations.trigger_schedule`)."""
    if row["queued"]:
        return f"run queued as task {row['task_id']} on queue {row['queue']}"
    if row["trigger_requested_at"] is not None:
        return (
            "run requested: the next round of a scheduler queues it (an older scheduler "
            "stored this schedule)"
        )
    return "not queued: the job cannot overlap and its previous task is still live"


def _count_text(count: int) -> str:
    return f"{COUNT_CAP - 1:,}+" if count >= COUNT_CAP else f"{count:,}"


def _to_list(request: Request, filters: dict[str, str], **note: str) -> Response:
    """Back to the task list (with ``filters``) after a bulk action, saying how it went."""
    url = request.url_for("tasks").path
    kept = {k: v for k, v in filters.items() if v}
    return RedirectResponse(f"{url}?{urlencode({**kept, **note})}", status_code=303)


def _ran_now(task: dict[str, Any]) -> str:
    return "due now: the next free worker runs it"


def _granted(task: dict[str, Any]) -> str:
    return f"queued again; it may now run until attempt {task['max_retries'] + 1}"


def _more(form: Any) -> dict[str, Any]:
    """The number of attempts to grant, from the action's form."""
    raw = form.get("more", "")
    if not isinstance(raw, str) or not raw.strip().isdigit():
        raise ConfigurationError("attempts to grant must be a whole number")
    return {"more": int(raw)}


def _actor(request: Request) -> str:
    """Who the audit trail records for a dashboard action: the HTTP basic user name, if any,
    and the client's address."""
    user = security.basic_user(request) or "anonymous"
    client = request.client.host if request.client else "unknown"
    return f"{user} via dashboard from {client}"


def _back(request: Request, task_id: str, **note: str) -> Response:
    url = request.url_for("task", task_id=task_id).path
    return RedirectResponse(f"{url}?{urlencode(note)}", status_code=303)


def _stamp(value: datetime | None) -> Markup | str:
    """A moment in UTC, in a ``<time data-utc>`` the page's script adds local time to."""
    if value is None:
        return "-"
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    return Markup('<time data-utc datetime="{}">{}</time>').format(utc.isoformat(), text)


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
