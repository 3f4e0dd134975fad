"""Flow control of queues (revision pgqueue_0006_flow): pause, resume, concurrency limits,
and the settings and live counts of each queue (the ``queue_flow`` view).

Pause, resume and limits call the revision's SQL functions, so Python, the command line and an
operator's own SQL do the same thing; an unknown queue raises ``psycopg.errors.NoDataFound``
there (see ``require_known_queue``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ._op import Op, StoreBase, nothing, rows

PAUSE_QUEUE = "SELECT {s}.pause_queue(%(queue)s::text) AS since"

RESUME_QUEUE = "SELECT {s}.resume_queue(%(queue)s::text) AS was_paused"

SET_QUEUE_LIMIT = """
SELECT {s}.set_queue_limit(%(queue)s::text, %(concurrency)s::integer,
                           %(rate_count)s::integer, %(rate_seconds)s::float8)
"""

QUEUE_FLOW = "SELECT * FROM {s}.queue_flow ORDER BY queue"

#: The limited jobs and keys with the most waiting tasks first, at most ``limit`` of them.
FLOW_LIMITS = """
SELECT * FROM {s}.flow_limits ORDER BY waiting DESC, name, limit_key LIMIT %(limit)s
"""


def _since(found: list[Any], count: int) -> datetime:
    since: datetime = found[0]["since"]
    return since


def _was_paused(found: list[Any], count: int) -> bool:
    return bool(found[0]["was_paused"])


class FlowOps(StoreBase):
    """Pause, resume and read queues' flow settings (see the module docstring)."""

    def pause_queue(self, *, queue: str) -> Op[datetime]:
        """Pause ``queue``; the result is since when it is paused (earlier if it already
        was). Raises ``psycopg.errors.NoDataFound`` for an unknown queue."""
        return Op(self._sql(PAUSE_QUEUE), {"queue": queue}, _since)

    def resume_queue(self, *, queue: str) -> Op[bool]:
        """Resume ``queue`` and wake its workers; the result says whether it was paused.
        Raises ``psycopg.errors.NoDataFound`` for an unknown queue."""
        return Op(self._sql(RESUME_QUEUE), {"queue": queue}, _was_paused)

    def set_queue_limit(
        self,
        *,
        queue: str,
        concurrency: int | None,
        rate_count: int | None,
        rate_seconds: float | None,
    ) -> Op[None]:
        """Limit ``queue`` to ``concurrency`` STARTED tasks at once and ``rate_count`` starts
        per ``rate_seconds`` (None: no such limit). Raises ``psycopg.errors.NoDataFound`` for
        an unknown queue."""
        params = {
            "queue": queue,
            "concurrency": concurrency,
            "rate_count": rate_count,
            "rate_seconds": rate_seconds,
        }
        return Op(self._sql(SET_QUEUE_LIMIT), params, nothing)

    def flow_limits(self, *, limit: int) -> Op[list[dict[str, Any]]]:
        """Rows of ``flow_limits`` (limited jobs and keys: limits and use), the ``limit``
        with the most waiting tasks."""
        return Op(self._sql(FLOW_LIMITS), {"limit": limit}, rows)

    def queue_flow(self) -> Op[list[dict[str, Any]]]:
        """Rows of ``queue_flow``: per queue, paused or not and its live counts."""
        return Op(self._sql(QUEUE_FLOW), {}, rows)
