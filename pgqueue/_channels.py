"""The NOTIFY channels of the task events (pulsar's pubsub channels): ``<queue>_<event>``.

:func:`channel` is the one place Python names a channel. In SQL the same format is spelled by
the migration's triggers (``notify_task_queued``, ``notify_task_status``) and by the revoke
statement; ``tests/test_channels.py`` checks that every notification they send arrives on the
channel named here.
"""

from __future__ import annotations

#: Sent when tasks are queued, or a task goes back to QUEUED or RETRY; payload the task id
#: (``*`` for several tasks of one statement).
TASK_QUEUED = "task_queued"
#: Sent when a worker claims a task (STARTED); payload the task id.
TASK_STARTED = "task_started"
#: Sent when a task reaches a ready state (SUCCESS, FAILURE, REVOKED); payload the task id.
TASK_DONE = "task_done"
#: Sent to a running task's worker when the task is revoked; payload the task id.
TASK_REVOKE = "task_revoke"
#: The events every status change of a task sends (what the dashboard follows).
TASK_EVENTS = (TASK_QUEUED, TASK_STARTED, TASK_DONE)


def channel(queue: str, event: str) -> str:
    """The NOTIFY channel of ``event`` (one of the ``TASK_*`` names) for ``queue``:
    ``"<queue>_<event>"``, as in pulsar. Both are used as given (no quoting: the listener
    quotes the channel as an identifier)."""
    return f"{queue}_{event}"
