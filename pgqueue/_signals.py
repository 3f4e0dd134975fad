"""Stop signals (SIGTERM, SIGINT) handed to a thread of their own.

A Python signal handler runs in the main thread between two bytecodes, wherever that thread
is: also while it holds a :class:`threading.Lock` (the executor's, an :class:`~threading.Event`'s
condition). A handler that takes the same lock waits for itself for ever, and the process no
longer answers any signal but SIGKILL. So the handler here only puts the signal on a
:class:`queue.SimpleQueue`, whose ``put`` the standard library documents as safe in a signal
handler, and a relay thread calls the stop callback, taking whatever locks it needs.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

#: The signals that ask a process to stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """While entered, each SIGTERM or SIGINT calls ``on_stop()`` on a relay thread.

    ``on_stop`` is called once per signal, in order, never in the signal handler itself.
    Entering installs the handlers (main thread only: :func:`signal.signal` raises
    :class:`ValueError` elsewhere); leaving restores the previous ones and ends the thread.
    """

    def __init__(self, on_stop: Callable[[], None], name: str = "pgqueue-signals") -> None:
        self._on_stop = on_stop
        self._signals: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._relay, name=name, daemon=True)
        self._previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int] = {}

    def __enter__(self) -> StopSignals:
        self._thread.start()
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous[signum] = signal.SIG_DFL if previous is None else previous
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._signals.put(None)
        self._thread.join()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.put(signum)  # reentrant: takes no lock a caller may hold

    def _relay(self) -> None:
        while self._signals.get() is not None:
            self._on_stop()
