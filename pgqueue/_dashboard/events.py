"""Live updates: one LISTEN connection for the dashboard, fanned out to every open page as
server-sent events.

The hub listens on ``<queue>_task_queued``, ``_task_started`` and ``_task_done`` of every queue
it has seen (queues of live tasks and of workers, looked up at start and whenever a page lists
queues). Each notification becomes one event ``data: <channel>`` for each subscriber; a page
then re-renders its live part. A subscriber that falls behind loses events, not the page: it
re-renders at the next one.

Behind a transaction pooler without a listen DSN (:func:`pgqueue._listener.listen_target`)
there is no LISTEN: every stream then sends ``data: poll`` every :data:`POLL_EVERY` seconds
instead, and the pages re-render on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable

from .._channels import TASK_EVENTS, channel
from .._listener import Listener, listen_target

#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0
#: Seconds a new stream waits for the listener before it says "ready" anyway.
READY_WAIT = 5.0
#: Seconds between the ``poll`` events of a dashboard that cannot LISTEN.
POLL_EVERY = 2.0


class EventHub:
    """Fan-out of task notifications to asyncio subscribers (one queue per open page).

    :param dsn: the dashboard's database; ``listen_dsn`` where to LISTEN instead (see
        :func:`pgqueue._listener.listen_target`, run by :meth:`start`).
    """

    def __init__(self, dsn: str, listen_dsn: str | None = None) -> None:
        self.dsn = dsn
        self.listen_dsn = listen_dsn
        self.poll_only = False
        self._listener = Listener(
            dsn, [], on_notify=self._notify, application_name="pgqueue-dashboard-listener"
        )
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: set[str] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the listener thread (or none: poll-only); events are delivered on ``loop``.
        Raises ``ConfigurationError`` for a listen DSN through a transaction pooler."""
        self._loop = loop
        target = listen_target(self.dsn, self.listen_dsn, "dashboard")
        if target is None:
            self.poll_only = True
            return
        self._listener.dsn = target
        self._listener.start()

    def stop(self) -> None:
        """Stop the listener and close its connection."""
        self._listener.stop()

    def watch(self, queues: Iterable[str]) -> None:
        """Follow the task events of these queues too (cheap when nothing is new)."""
        with self._lock:
            new = set(queues) - self._queues
            self._queues |= new
        if new:  # subscribes in the background: a page never waits for the listener
            channels = [channel(queue, event) for queue in new for event in TASK_EVENTS]
            self._listener.listen(channels, timeout=0)

    def _notify(self, channel: str, _payload: str) -> None:
        loop = self._loop
        if loop is None:
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            loop.call_soon_threadsafe(_offer, subscriber, channel)

    async def stream(self) -> AsyncIterator[str]:
        """Server-sent event text for one subscriber, until the client goes away."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=100)
        with self._lock:
            self._subscribers.add(queue)
        try:
            if self.poll_only:
                yield "retry: 2000\nevent: ready\ndata: poll-only\n\n"
                while True:
                    await asyncio.sleep(POLL_EVERY)
                    yield "data: poll\n\n"
            # "ready" once every followed channel is LISTENed on: the page is live from then.
            listening = await asyncio.to_thread(self._listener.wait_listening, READY_WAIT)
            yield f"retry: 2000\nevent: ready\ndata: {'listening' if listening else 'late'}\n\n"
            while True:
                try:
                    channel = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"data: {channel}\n\n"
        finally:
            with self._lock:
                self._subscribers.discard(queue)


def _offer(queue: asyncio.Queue[str], channel: str) -> None:
    if not queue.full():
        queue.put_nowait(channel)
