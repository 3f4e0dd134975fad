"""The client's inspection of jobs: their list and the schedules of periodic ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .core import ClientCore

#: What ``job_list`` shows of a periodic job's stored schedule.
_SCHEDULE_INFO = ("run_every", "cron", "runs_count", "last_tick", "next_tick")


class JobsMixin(ClientCore):
    """Inspection of the registered jobs and the stored schedules of periodic ones."""

    # -- jobs ------------------------------------------------------------------------------

    def job_list(self, jobnames: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``[(name, info), ...]`` for the registered jobs (all, or those named), as in pulsar.

        ``info`` holds ``doc``, ``type`` (``"regular"`` or ``"periodic"``), ``can_overlap`` (a
        bool, or ``"maybe"`` when it depends on the kwargs), ``timeout`` (seconds or None),
        ``queue`` and ``priority``. A periodic job's also holds, from its stored schedule (None
        until a scheduler has defined it): ``next_run`` (seconds until its next tick, 0 when
        due), ``run_every`` (seconds; None for cron), ``cron``, ``runs_count``, ``last_tick``
        and ``next_tick``.
        """
        registry = self.registry
        out = []
        for name in jobnames or registry:
            job = registry.get(name)
            if job is None:
                continue
            overlap = job.can_overlap
            out.append(
                (
                    name,
                    {
                        "doc": job.doc,
                        "type": job.type,
                        "can_overlap": "maybe" if callable(overlap) else bool(overlap),
                        "timeout": job.expiry_seconds(),
                        "queue": job.queue or self.name,
                        "priority": job.priority,
                    },
                )
            )
        infos = dict(out)
        periodic = [name for name, info in out if info["type"] == "periodic"]
        stored = {row["name"]: row for row in self.schedules(periodic)} if periodic else {}
        for name in periodic:
            row = stored.get(name, {})
            infos[name].update({key: row.get(key) for key in _SCHEDULE_INFO})
            infos[name]["next_run"] = max(row["due_in"], 0.0) if row else None
        return out

    def schedules(self, jobnames: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The stored schedules of periodic jobs (all, or those named), by name.

        Each row is the ``schedule_state`` view's (``name``, ``schedule``, ``missed``,
        ``last_tick``, ``next_tick``, ``runs_count``, ``skipped_count``, ``last_outcome``,
        ``last_task``, ``last_task_state``) with ``due_in`` as seconds until ``next_tick`` by
        the database clock (negative: due), plus ``run_every`` (seconds; None for cron),
        ``cron`` and ``timezone``. A schedule exists once a scheduler has defined it.
        """
        names = None if jobnames is None else list(jobnames)
        with self.connection() as conn:
            return self.store.list_schedules(names=names).run(conn)

    def next_scheduled(
        self, jobnames: Iterable[str] | None = None
    ) -> tuple[str | list[str] | None, float | None]:
        """``(name, seconds)``: the periodic job (of those named, else of all registered) whose
        next tick comes first, and the seconds until it (0 when due) by the database clock, as
        pulsar's ``next_scheduled``. ``(jobnames, None)`` when none has a stored schedule."""
        wanted = list(jobnames) if jobnames else None
        names = wanted or [name for name, _ in self.registry.filter_types("periodic")]
        rows = self.schedules(names) if names else []
        if not rows:
            return wanted, None
        first = min(rows, key=lambda row: row["due_in"])
        return first["name"], max(first["due_in"], 0.0)
