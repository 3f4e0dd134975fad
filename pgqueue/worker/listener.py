"""The worker's listener: one LISTEN connection (a :class:`pgqueue._listener.Listener`
service) on ``<queue>_task_queued`` and ``<queue>_task_revoke`` of every queue it claims from.

A queued task, or a reconnect (anything may have been queued meanwhile), calls ``on_queued``
(the claimer wakes); a revoke calls ``on_revoked`` with the task's id (the executor tells the
running job).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .._channels import TASK_QUEUED, TASK_REVOKE, channel
from .._listener import Listener


def worker_listener(
    dsn: str,
    queues: Sequence[str],
    on_queued: Callable[[], None],
    on_revoked: Callable[[str], None],
) -> Listener:
    """The listener of a worker claiming from ``queues`` (channels named by
    :func:`pgqueue._channels.channel`). Not started."""

    def route(channel_name: str, payload: str) -> None:
        if channel_name.endswith(TASK_REVOKE):
            on_revoked(payload)
        else:
            on_queued()

    return Listener(
        dsn,
        [channel(queue, event) for queue in queues for event in (TASK_QUEUED, TASK_REVOKE)],
        on_notify=route,
        on_reconnect=on_queued,
        application_name="pgqueue-worker-listener",
    )
