"""The worker's listener: one LISTEN connection (a :class:`pgqueue.listener.Listener`
service) on ``<queue>_task_queued`` and ``<queue>_task_revoke`` of every queue it claims from.

A queued task, or a reconnect (anything may have been queued meanwhile), calls ``on_queued``
(the claimer wakes); a revoke calls ``on_revoked`` with the task's id (the executor tells the
running job).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..listener import Listener

#: The event on which a running task's worker is told it was revoked: ``<queue>_task_revoke``.
REVOKE_EVENT = "task_revoke"
#: The event on which a worker hears a task was queued: ``<queue>_task_queued``.
QUEUED_EVENT = "task_queued"


def worker_listener(
    dsn: str,
    channel: Callable[[str, str], str],
    queues: Sequence[str],
    on_queued: Callable[[], None],
    on_revoked: Callable[[str], None],
) -> Listener:
    """The listener of a worker claiming from ``queues``; ``channel(event, queue)`` names
    a channel (:meth:`pgqueue.TaskBackend.channel`). Not started."""

    def route(channel_name: str, payload: str) -> None:
        if channel_name.endswith(REVOKE_EVENT):
            on_revoked(payload)
        else:
            on_queued()

    return Listener(
        dsn,
        [channel(event, queue) for queue in queues for event in (QUEUED_EVENT, REVOKE_EVENT)],
        on_notify=route,
        on_reconnect=on_queued,
        application_name="pgqueue-worker-listener",
    )
