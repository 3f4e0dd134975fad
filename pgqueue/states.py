"""Task states, with the numbers pulsar 0.9 gave them.

The numbers are stored in ``task.status`` (``smallint``) and are readable in SQL
through the ``state`` lookup table (``SELECT * FROM pgqueue.state``).

* ``QUEUED = 6``: queued, not yet started (claimable once ``run_at`` has passed).
* ``STARTED = 5``: claimed by a worker and running.
* ``RETRY = 4``: failed or lost, waiting for another attempt (claimable after ``run_at``).
* ``REVOKED = 3``: revoked (expired before it started, or cancelled); never ran to the end.
* ``FAILURE = 2``: ran and failed.
* ``SUCCESS = 1``: ran and succeeded.
"""

from __future__ import annotations

import enum

QUEUED = 6
STARTED = 5
RETRY = 4
REVOKED = 3
FAILURE = 2
SUCCESS = 1

NAMES: dict[int, str] = {
    QUEUED: "QUEUED",
    STARTED: "STARTED",
    RETRY: "RETRY",
    REVOKED: "REVOKED",
    FAILURE: "FAILURE",
    SUCCESS: "SUCCESS",
}

#: States in which a task has finished: it will not change again on its own.
READY_STATES = frozenset({REVOKED, FAILURE, SUCCESS})
#: States in which a task has run to the end (pulsar's ``FULL_RUN_STATES``).
FULL_RUN_STATES = frozenset({FAILURE, SUCCESS})
#: States that hold a task's ``lock_id`` (the partial unique index covers these).
LIVE_STATES = frozenset({QUEUED, STARTED, RETRY})
#: States a worker may claim from.
CLAIMABLE_STATES = frozenset({QUEUED, RETRY})


def status_string(status: int | None) -> str:
    """Return the name of a state code (``6 -> "QUEUED"``); ``"UNKNOWN"`` for anything else."""
    return NAMES.get(status, "UNKNOWN") if status is not None else "UNKNOWN"


def status_code(name: str) -> int:
    """Return the code of a state name, case-insensitive (``"failure" -> 2``).

    Raises ``ValueError`` naming the valid states when ``name`` is not one of them.
    """
    for code, known in NAMES.items():
        if known == name.upper():
            return code
    raise ValueError(f"unknown state {name!r}; expected one of {', '.join(NAMES.values())}")


class RevokeResult(enum.StrEnum):
    """What :meth:`pgqueue.TaskBackend.revoke` did (issue 12, F26); truthy for the first two,
    so ``if backend.revoke(task_id):`` still reads "the task was live".

    * ``REVOKED``: the task had not started (QUEUED or RETRY); it is REVOKED now and never
      runs (its lock_id is free).
    * ``STOP_REQUESTED``: the task was running (STARTED); its worker is asked to stop it. It
      ends REVOKED if its job stops (raises ``Revoked``, or an ``async`` job is cancelled),
      else as its job ends: a job that returns normally ends SUCCESS with its result.
    * ``ALREADY_DONE`` (falsy): the task had already finished; nothing changed.
    """

    REVOKED = "revoked"
    STOP_REQUESTED = "stop_requested"
    ALREADY_DONE = "already_done"

    def __bool__(self) -> bool:
        return self is not RevokeResult.ALREADY_DONE
