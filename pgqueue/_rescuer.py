"""Rescue: tasks left STARTED by a lost worker go back to RETRY, or end FAILURE.

A worker is *lost* when its row is missing, marked stopped, or its last heartbeat is older than
its lease (``heartbeat_at + lease_seconds < now()`` on the database clock, counting from the
server's start when that is later, so an outage never makes a live worker look dead). Every
worker runs :func:`rescue_lost_tasks` every ``lease / 4`` seconds; the statement
(``RESCUE_LOST_TASKS`` of :mod:`pgqueue._store.workers`) locks the rows it changes with
``SKIP LOCKED`` in id order, so any number of concurrent sweeps neither wait for each other
nor deadlock, and each task is rescued by exactly one of them. A late heartbeat is never a
reason on its own: a worker never rescues its own tasks, and a lost worker's row that another
session holds locked (its heartbeat being written, an operator's open transaction) is
skipped until the lock is gone.

The lost run counts as an attempt: a task that kills its worker every time ends FAILURE after
``1 + max_retries`` attempts (F20). The error says ``worker lost: <id> stopped heartbeating``.

A live worker also rescues its own *orphans* (:func:`rescue_orphaned_tasks`): tasks STARTED
under it for longer than its lease that it does not hold. Its heartbeat keeps its lease, so
nobody else would, and it will never write their outcome: after a failover to a standby that
had not received a write of the worker (an outcome, a give-back), the promoted database shows
the task STARTED under a worker that already let it go.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from . import states
from ._retry import ExponentialBackoff
from ._store import Store
from ._store.workers import RescueBackoff, RescuedRow

logger = logging.getLogger("pgqueue.rescuer")

#: Most tasks one rescue statement changes; a sweep repeats it until fewer come back.
RESCUE_BATCH = 500


def rescue_lost_tasks(
    conn: psycopg.Connection[dict[str, Any]],
    store: Store,
    backoff: ExponentialBackoff,
    limit: int = RESCUE_BATCH,
    *,
    worker: str = "",
) -> list[RescuedRow]:
    """Rescue every task of a lost worker; return the rows changed (``id``, ``name``,
    ``status``, ``attempts``, ``worker``).

    :param conn: an autocommit connection (each batch commits on its own).
    :param store: the store of the schema.
    :param backoff: the delay before the next attempt of a rescued task (its ``base``,
        ``factor``, ``cap`` and ``jitter`` are applied in SQL, on the database clock, the
        exponent capped at its ``max_exponent`` as in Python).
    :param worker: the id of the worker sweeping: its own tasks are never rescued (a live
        worker never rescues itself, F23); ``""`` for a sweep from outside any worker.
    :raises psycopg.OperationalError: the database went away (the caller retries later).
    """
    op = store.rescue_lost_tasks(worker=worker, limit=limit, backoff=_in_sql(backoff))
    rescued: list[RescuedRow] = []
    while True:
        rows = op.run(conn)
        rescued.extend(rows)
        for row in rows:
            logger.warning(
                "rescued task.%s(%s) from lost worker %s after attempt %d: now %s",
                row["name"],
                row["id"],
                row["worker"],
                row["attempts"],
                states.status_string(row["status"]),
            )
        if len(rows) < limit:
            return rescued


def rescue_orphaned_tasks(
    conn: psycopg.Connection[dict[str, Any]],
    store: Store,
    backoff: ExponentialBackoff,
    *,
    worker: str,
    claimed: list[str],
    after: float,
) -> list[RescuedRow]:
    """Rescue the tasks STARTED under live worker ``worker`` for more than ``after`` seconds
    (its lease) that are not among the ids it holds, ``claimed`` (running, or returned with an
    outcome still to write); return the rows changed, as :func:`rescue_lost_tasks`.

    :raises psycopg.OperationalError: the database went away (the caller retries later).
    """
    rows = store.rescue_orphaned_tasks(
        worker=worker, claimed=claimed, after=after, backoff=_in_sql(backoff)
    ).run(conn)
    for row in rows:
        logger.warning(
            "rescued task.%s(%s): STARTED under this worker (%s) for over %.0fs without it "
            "holding a run of it (an outcome lost in a failover?), after attempt %d: now %s",
            row["name"],
            row["id"],
            worker,
            after,
            row["attempts"],
            states.status_string(row["status"]),
        )
    return rows


def _in_sql(backoff: ExponentialBackoff) -> RescueBackoff:
    """``backoff`` as the rescue statements take it."""
    return {
        "backoff_base": backoff.base,
        "backoff_factor": backoff.factor,
        "backoff_cap": backoff.cap,
        "backoff_jitter": backoff.jitter,
        "backoff_max_exponent": backoff.max_exponent,
    }
