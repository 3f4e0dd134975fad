"""One lifecycle for every background part of pgqueue: a loop of rounds on a daemon thread.

A :class:`Service` runs :meth:`Service.run_once` over and over: each round does one piece of
work and returns how many seconds to wait before the next (0: at once; None: the service has
nothing more to do and ends). The wait ends early on :meth:`Service.wake` or
:meth:`Service.stop`. A round that raises is handed to :meth:`Service.on_error`, which logs
it and returns the pause before the next round, so no error ends the thread by accident.

The contract, the same for every service (after River's start/stop and oban-py's looper):

* :meth:`~Service.start` runs the loop on a daemon thread; :meth:`~Service.run` runs it on
  the caller's thread instead (the worker's claimer does);
* :attr:`~Service.started` is set once the loop is about to run its first round;
* :meth:`~Service.stop` asks the loop to end after its current round and waits up to
  ``timeout`` seconds for it; it is safe twice, from the service's own thread, and before
  :meth:`~Service.start` (then the service never runs);
* :meth:`~Service.wait` blocks until the loop has ended (True) or ``timeout`` passed;
* :meth:`~Service.run_once` is one round, callable directly by tests, without any thread.
"""

from __future__ import annotations

import logging
import threading

from ._errors import first_line

logger = logging.getLogger("pgqueue")


class Service:
    """The base of every background part (see the module docstring).

    :param name: the thread's name (``pgqueue-<part>``), also used in log messages.
    Subclasses implement :meth:`run_once` and may override :meth:`on_error` (the default logs
    a warning and backs off from 0.5 s doubling to 10 s), :meth:`first_delay` (seconds before
    the first round, default 0) and :meth:`close` (release connections; runs on the loop's
    thread when it ends, and from :meth:`stop` when the service never started).
    """

    #: Shortest and longest pause after a failed round (seconds), doubling in between.
    MIN_BACKOFF = 0.5
    MAX_BACKOFF = 10.0

    def __init__(self, name: str) -> None:
        self.name = name
        #: Set once the loop runs (its first round is about to start).
        self.started = threading.Event()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None
        self._backoff = self.MIN_BACKOFF

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- what a service implements ---------------------------------------------------------

    def run_once(self) -> float | None:
        """Do one round; return the seconds until the next (0: at once) or None to end."""
        raise NotImplementedError

    def on_error(self, exc: Exception) -> float | None:
        """A round raised ``exc``: log it, return the pause before the next round."""
        delay = self.backoff()
        logger.warning("%s failed (%s); retrying in %.1fs", self.name, first_line(exc), delay)
        return delay

    def first_delay(self) -> float:
        """Seconds between :meth:`start` and the first round."""
        return 0.0

    def close(self) -> None:
        """Release what the service holds (connections); called once the loop has ended."""

    # -- the lifecycle ---------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def backoff(self) -> float:
        """The next pause after a failure: 0.5 s, doubling up to 10 s (see :meth:`succeeded`)."""
        delay = self._backoff
        self._backoff = min(delay * 2, self.MAX_BACKOFF)
        return delay

    def succeeded(self) -> None:
        """A round went well: the next failure backs off from the start again."""
        self._backoff = self.MIN_BACKOFF

    def start(self) -> None:
        """Run the loop on a daemon thread named :attr:`name`; returns at once."""
        if self._thread is not None or self._stopping.is_set():
            return
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def run(self) -> None:
        """Run the loop on the caller's thread until :meth:`stop` or a round returns None."""
        self.started.set()
        try:
            delay: float | None = self.first_delay()
            if delay:
                self._wake.wait(delay)
            while not self._stopping.is_set():
                self._wake.clear()
                delay = self.round()
                if delay is None:
                    break
                if delay > 0:
                    self._wake.wait(delay)
        finally:
            self.close()
            self._ended.set()

    def round(self) -> float | None:
        """One round as the loop runs it: :meth:`run_once`, errors handed to :meth:`on_error`."""
        try:
            return self.run_once()
        except Exception as exc:
            return self.on_error(exc)

    def wake(self) -> None:
        """End the current wait between rounds: the next round starts at once."""
        self._wake.set()

    def sleep(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for :meth:`wake` (or :meth:`stop`), on any thread
        (say one waiting for the service's progress); True if woken. Clears the wake-up."""
        woken = self._wake.wait(timeout)
        self._wake.clear()
        return woken

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to end after its current round; wait up to ``timeout`` seconds for its
        thread (a loop that :meth:`run` runs on a caller's thread is not waited for: that
        caller returns from :meth:`run`; see :meth:`wait`).

        Safe to call twice, from the loop's own thread, and before :meth:`start`."""
        self._interrupt()
        thread = self._thread
        if thread is None:
            if not self.started.is_set() and not self._ended.is_set():
                self._ended.set()
                self.close()
            return
        if thread is not threading.current_thread():
            thread.join(timeout)

    def _interrupt(self) -> None:
        """Tell the loop to end (a service that must finish queued work overrides this)."""
        self._stopping.set()
        self._wake.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the loop has ended; False if ``timeout`` seconds passed first."""
        return self._ended.wait(timeout)
