"""Stop signals (SIGTERM, SIGINT) handed to a thread of their own, each one counted.

A Python signal handler runs in the main thread between two bytecodes, wherever that thread
is: also while it holds a :class:`threading.Lock` (the executor's, an :class:`~threading.Event`'s
condition). A handler that takes the same lock waits for itself for ever, and the process no
longer answers any signal but SIGKILL. And Python runs its handler once for signals that
arrived before it ran: a second SIGTERM soon after the first would be lost.

So the handler here does nothing at all. Python's own C-level handler writes the number of
each signal delivered to the *wakeup fd* (:func:`signal.set_wakeup_fd`), one byte per
signal, and a relay thread reads them and calls the stop callback once per SIGTERM or
SIGINT, taking whatever locks it needs. (The kernel itself keeps one signal of a kind
pending: a second ``kill`` before the process was scheduled at all is merged into the first.)
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

#: The signals that ask a process to stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, FrameType | None], object] | int


def _swallow(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: nothing (the byte on the wakeup fd is the signal)."""


class StopSignals:
    """While entered, each SIGTERM or SIGINT calls the stop callback on a relay thread.

    :param on_stop: the callback, called once per signal, in order, never in the signal
        handler itself; None until :meth:`connect` gives one: the signals received before
        are counted and passed on then (a process that installs this first thing catches a
        Ctrl-C during its start-up, also when it was started with SIGINT ignored).
    :param restore: on leaving, put the previous handlers back (True) or ignore stop signals
        from then on (False: a program on its way out, where a late Ctrl-C must not raise
        ``KeyboardInterrupt`` nor a late SIGTERM change its exit status).

    Entering installs the handlers and must happen in the main thread (:func:`signal.signal`
    raises :class:`ValueError` elsewhere, before anything is started); leaving ends the thread.
    """

    def __init__(
        self,
        on_stop: Callable[[], None] | None = None,
        *,
        restore: bool = True,
        name: str = "pgqueue-signals",
    ) -> None:
        self._on_stop = on_stop
        self._restore = restore
        self._lock = threading.Lock()
        self._pending = 0
        self._thread = threading.Thread(target=self._relay, name=name, daemon=True)
        self._previous: dict[signal.Signals, _Handler] = {}
        self._previous_fd = -1
        self._reader: socket.socket | None = None
        self._writer: socket.socket | None = None

    def connect(self, on_stop: Callable[[], None]) -> None:
        """Send later signals to ``on_stop``, and call it now for each signal received
        while there was no callback."""
        with self._lock:
            self._on_stop = on_stop
            pending, self._pending = self._pending, 0
        for _ in range(pending):
            on_stop()

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, _swallow)
            self._previous[signum] = signal.SIG_DFL if previous is None else previous
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        for signum, previous in self._previous.items():
            # SIG_IGN, not a Python handler: Python resets its handlers to the default when
            # it finalizes, and a SIGTERM then would still end the process with status 143.
            signal.signal(signum, previous if self._restore else signal.SIG_IGN)
        assert self._writer is not None and self._reader is not None
        self._writer.close()  # the relay reads the end of the stream and returns
        self._thread.join()
        self._reader.close()

    def _relay(self) -> None:
        assert self._reader is not None
        stop_numbers = {int(signum) for signum in STOP_SIGNALS}
        while data := self._reader.recv(64):
            for signum in data:
                if signum in stop_numbers:
                    self._stop_requested()

    def _stop_requested(self) -> None:
        with self._lock:
            on_stop = self._on_stop
            if on_stop is None:
                self._pending += 1
                return
        on_stop()
