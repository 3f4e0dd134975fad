"""Periodic schedules (:mod:`pgqueue._scheduler`, ``pgqueue schedule``, ``job_list``, the
dashboard): define, tick, list; an operator's pause, resume and trigger.

``now`` is None in production, meaning the database's ``now()``; tests pass an explicit
timestamp to drive the schedule through time. The host clock is never read.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, TypedDict, cast

from ._op import Op, StoreBase, any_row, first, nothing, rows
from .tasks import TaskParams

#: "now" of every schedule statement: the database clock unless a timestamp is given.
NOW = "COALESCE(%(now)s::timestamptz, now())"

SCHEDULE_NOW = f"SELECT {NOW} AS now"

#: The schedule row of one job, locked while its definition is compared and rewritten.
SCHEDULE_FOR_DEFINE = "SELECT * FROM {s}.schedule WHERE name = %(name)s FOR UPDATE"

#: First definition of a schedule. A concurrent first definition wins; this one does nothing.
DEFINE_SCHEDULE = f"""
INSERT INTO {{s}}.schedule (name, run_every, anchor, cron, timezone, missed, backfill_limit,
                            misfire_grace, next_tick, defined_at)
VALUES (%(name)s::text, %(run_every)s::interval, %(anchor)s::timestamptz, %(cron)s::text,
        %(timezone)s::text, %(missed)s::text, %(backfill_limit)s::integer,
        %(misfire_grace)s::interval, %(next_tick)s::timestamptz, {NOW})
ON CONFLICT (name) DO NOTHING
"""

#: A changed definition. ``next_tick`` NULL keeps the current one (only the missed-run policy
#: changed); otherwise the ticks moved and counting restarts from ``next_tick``.
REDEFINE_SCHEDULE = f"""
UPDATE {{s}}.schedule
SET run_every = %(run_every)s::interval, anchor = %(anchor)s::timestamptz, cron = %(cron)s::text,
    timezone = %(timezone)s::text, missed = %(missed)s::text,
    backfill_limit = %(backfill_limit)s::integer, misfire_grace = %(misfire_grace)s::interval,
    next_tick = COALESCE(%(next_tick)s::timestamptz, next_tick),
    defined_at = CASE WHEN %(next_tick)s::timestamptz IS NULL THEN defined_at ELSE {NOW} END
WHERE name = %(name)s::text
"""

#: The schedules among ``names`` with the seconds until their next tick (<= 0: due); one
#: with a pending trigger (an operator's "run now") is due now.
SCHEDULE_WAITS = f"""
SELECT name, wait
FROM (SELECT name, extract(epoch FROM CASE WHEN trigger_requested_at IS NULL
                                           THEN next_tick - {NOW} ELSE interval '0' END
                          )::float8 AS wait
      FROM {{s}}.schedule
      WHERE name = ANY(%(names)s::text[])) w
ORDER BY wait
"""

#: Lock one due (or triggered) schedule row for this scheduler; none if it is neither, or
#: another scheduler holds it right now (it is handling that tick: SKIP LOCKED, no waiting).
LOCK_DUE_SCHEDULE = f"""
SELECT {NOW} AS now, s.*
FROM {{s}}.schedule s
WHERE s.name = %(name)s::text AND (s.next_tick <= {NOW} OR s.trigger_requested_at IS NOT NULL)
FOR UPDATE SKIP LOCKED
"""

#: The compare-and-set that makes a tick exactly-once: move next_tick on only if it is still
#: the value this scheduler read and is due. Runs in the same transaction as the INSERT of
#: the tick's task, so both commit or neither does.
ADVANCE_SCHEDULE = f"""
UPDATE {{s}}.schedule
SET next_tick = %(next_tick)s::timestamptz,
    last_tick = COALESCE(%(last_tick)s::timestamptz, last_tick),
    ticked_at = {NOW}
WHERE name = %(name)s::text AND next_tick = %(seen)s::timestamptz AND next_tick <= {NOW}
RETURNING name
"""

#: What the ticks just advanced over produced (same transaction as ADVANCE_SCHEDULE).
RECORD_TICKS = """
UPDATE {s}.schedule
SET runs_count = runs_count + %(queued)s::integer,
    skipped_count = skipped_count + %(skipped)s::integer,
    last_task = COALESCE(%(last_task)s::uuid, last_task),
    last_outcome = %(outcome)s::text
WHERE name = %(name)s::text
"""

#: An operator's pause (``paused``) or resume of one schedule; the row, or none for an
#: unknown name. Pausing a paused schedule keeps its first ``paused_at``.
SET_SCHEDULE_PAUSED = """
UPDATE {s}.schedule
SET paused_at = CASE WHEN %(paused)s::boolean THEN COALESCE(paused_at, now()) END
WHERE name = %(name)s::text
RETURNING name, paused_at
"""

#: An operator's request for one run now, served by the next scheduler round; the row, or
#: none for an unknown name. A second request before it is served is the same request.
REQUEST_TRIGGER = """
UPDATE {s}.schedule
SET trigger_requested_at = COALESCE(trigger_requested_at, now()),
    trigger_requested_by = COALESCE(trigger_requested_by, %(actor)s::text)
WHERE name = %(name)s::text
RETURNING name, trigger_requested_at, paused_at
"""

#: The parameters of a tick's task (``schedule.task_options``, revision
#: pgqueue_0013_queue_stats) as the scheduler defining the schedule worked them out from its
#: job; rewritten only when they changed.
SET_TASK_OPTIONS = """
UPDATE {s}.schedule SET task_options = %(options)s::jsonb
WHERE name = %(name)s::text AND task_options IS DISTINCT FROM %(options)s::jsonb
"""

#: The schedule row of ``name`` locked for an operator's trigger (against a scheduler's tick
#: of the same schedule and another trigger), with the database's now(); none for an unknown
#: name.
LOCK_SCHEDULE = """
SELECT now() AS now, name, task_options, paused_at
FROM {s}.schedule WHERE name = %(name)s::text
FOR UPDATE
"""

#: The trigger request just served (same transaction as the task it queued).
CLEAR_TRIGGER = """
UPDATE {s}.schedule
SET trigger_requested_at = NULL, trigger_requested_by = NULL
WHERE name = %(name)s::text
"""

#: Schedules (all, or those in ``names``) for ``job_list``, ``next_scheduled`` and
#: ``pgqueue schedule``: the schedule_state view plus run_every in seconds.
LIST_SCHEDULES = """
SELECT v.name, v.schedule, v.missed, v.last_tick, v.next_tick,
       extract(epoch FROM v.due_in)::float8 AS due_in, v.runs_count, v.skipped_count,
       v.last_outcome, v.last_task::text AS last_task, v.last_task_state,
       extract(epoch FROM s.run_every)::float8 AS run_every, s.cron, s.timezone,
       v.paused_at, v.trigger_requested_at
FROM {s}.schedule_state v JOIN {s}.schedule s USING (name)
WHERE %(names)s::text[] IS NULL OR v.name = ANY(%(names)s::text[])
ORDER BY v.name
"""

#: The parameters of :data:`~pgqueue._store.tasks.QUEUE_TASK` a tick's task does not take
#: from its schedule's ``task_options``: the trigger or tick gives them.
_PER_RUN = ("meta_params", "run_at", "countdown")


def task_options(params: TaskParams) -> str:
    """``schedule.task_options`` for a tick's task parameters: them as a JSON object, without
    those of each run (``meta_params``, ``run_at``, ``countdown``); an absolute expiry as
    ISO 8601 text."""
    kept: dict[str, Any] = {k: v for k, v in params.items() if k not in _PER_RUN}
    if isinstance(kept.get("expiry_at"), datetime):
        kept["expiry_at"] = kept["expiry_at"].isoformat()
    return json.dumps(kept, sort_keys=True)


def triggered_params(options: dict[str, Any], meta_params: dict[str, Any]) -> TaskParams:
    """The parameters of :data:`~pgqueue._store.tasks.QUEUE_TASK` for a run of a schedule
    now: its stored ``task_options`` (see :func:`task_options`), due at once, with
    ``meta_params``."""
    params = {**options, "meta_params": json.dumps(meta_params), "run_at": None, "countdown": None}
    return cast(TaskParams, params)


#: A row of the ``schedule`` table (and, for :meth:`ScheduleOps.lock_due_schedule`, ``now``).
ScheduleRow = dict[str, Any]


class Definition(TypedDict):
    """The parameters of :data:`DEFINE_SCHEDULE` and :data:`REDEFINE_SCHEDULE`."""

    name: str
    run_every: timedelta | None
    anchor: datetime | None
    cron: str | None
    timezone: str | None
    missed: str
    backfill_limit: int | None
    misfire_grace: timedelta | None
    next_tick: datetime | None
    now: datetime | None


class WaitRow(TypedDict):
    """A schedule and the seconds until its next tick (<= 0: due)."""

    name: str
    wait: float


def _now(found: list[Any], count: int) -> datetime:
    value: datetime = found[0]["now"]
    return value


class ScheduleOps(StoreBase):
    """Schedule statements (see the module docstring)."""

    def schedule_now(self, *, now: datetime | None) -> Op[datetime]:
        """``now``, or the database's now() when None."""
        return Op(self._sql(SCHEDULE_NOW), {"now": now}, _now)

    def schedule_for_define(self, *, name: str) -> Op[ScheduleRow | None]:
        """The schedule row of job ``name``, locked (inside a transaction); None if none."""
        return Op(self._sql(SCHEDULE_FOR_DEFINE), {"name": name}, first)

    def define_schedule(self, definition: Definition) -> Op[None]:
        """Insert a first definition (a concurrent first one wins)."""
        return Op(self._sql(DEFINE_SCHEDULE), definition, nothing)

    def redefine_schedule(self, definition: Definition) -> Op[None]:
        """Rewrite a changed definition (``next_tick`` None keeps the current one)."""
        return Op(self._sql(REDEFINE_SCHEDULE), definition, nothing)

    def schedule_waits(self, *, names: list[str], now: datetime | None) -> Op[list[WaitRow]]:
        """The schedules among ``names``, soonest tick first, with seconds until it."""
        return Op(self._sql(SCHEDULE_WAITS), {"names": names, "now": now}, rows)

    def lock_due_schedule(self, *, name: str, now: datetime | None) -> Op[ScheduleRow | None]:
        """Lock the schedule row of ``name`` if due and free (see :data:`LOCK_DUE_SCHEDULE`)."""
        return Op(self._sql(LOCK_DUE_SCHEDULE), {"name": name, "now": now}, first)

    def advance_schedule(
        self,
        *,
        name: str,
        seen: datetime,
        next_tick: datetime,
        last_tick: datetime | None,
        now: datetime | None,
    ) -> Op[bool]:
        """Move ``next_tick`` on if it is still ``seen`` and due; False when another
        scheduler moved it first."""
        params = {
            "name": name,
            "seen": seen,
            "next_tick": next_tick,
            "last_tick": last_tick,
            "now": now,
        }
        return Op(self._sql(ADVANCE_SCHEDULE), params, any_row)

    def record_ticks(
        self, *, name: str, queued: int, skipped: int, last_task: str | None, outcome: str
    ) -> Op[None]:
        """Count what the ticks just advanced over produced."""
        params = {
            "name": name,
            "queued": queued,
            "skipped": skipped,
            "last_task": last_task,
            "outcome": outcome,
        }
        return Op(self._sql(RECORD_TICKS), params, nothing)

    def set_schedule_paused(self, *, name: str, paused: bool) -> Op[ScheduleRow | None]:
        """Pause (``paused``) or resume the schedule ``name``; its ``name`` and
        ``paused_at``, or None when no schedule has that name."""
        return Op(self._sql(SET_SCHEDULE_PAUSED), {"name": name, "paused": paused}, first)

    def request_trigger(self, *, name: str, actor: str) -> Op[ScheduleRow | None]:
        """Ask the schedulers for one run of ``name`` now; its ``name``,
        ``trigger_requested_at`` and ``paused_at``, or None when no schedule has that name."""
        return Op(self._sql(REQUEST_TRIGGER), {"name": name, "actor": actor}, first)

    def set_task_options(self, *, name: str, options: str) -> Op[None]:
        """Store the tick task parameters of ``name`` (JSON text of :func:`task_options`)."""
        return Op(self._sql(SET_TASK_OPTIONS), {"name": name, "options": options}, nothing)

    def lock_schedule(self, *, name: str) -> Op[ScheduleRow | None]:
        """Lock the schedule row of ``name`` (inside a transaction): its ``now``, ``name``,
        ``task_options`` and ``paused_at``; None when no schedule has that name."""
        return Op(self._sql(LOCK_SCHEDULE), {"name": name}, first)

    def clear_trigger(self, *, name: str) -> Op[None]:
        """Forget the served trigger request of ``name``."""
        return Op(self._sql(CLEAR_TRIGGER), {"name": name}, nothing)

    def list_schedules(self, *, names: list[str] | None) -> Op[list[ScheduleRow]]:
        """The schedules (all when ``names`` is None), by name: the ``schedule_state`` view
        with ``due_in`` and ``run_every`` in seconds, plus ``cron`` and ``timezone``. The one
        read of ``job_list``, ``next_scheduled``, ``pgqueue schedule`` and the dashboard."""
        return Op(self._sql(LIST_SCHEDULES), {"names": names}, rows)
