"""Stop signals reach the stop callback on a thread of their own (``pgqueue._signals``)."""

from __future__ import annotations

import os
import signal
import threading

from pgqueue._signals import StopSignals


def test_a_signal_while_the_main_thread_holds_the_callbacks_lock_does_not_deadlock() -> None:
    """The worker's stop callback takes the executor's lock; a SIGTERM that lands while the
    main thread holds that lock must wait for it, not wait for itself for ever (a handler that
    called the callback directly hung the worker: CI saw it ignore SIGTERM)."""
    lock = threading.Lock()
    stopped = threading.Event()
    calls: list[str] = []

    def on_stop() -> None:
        with lock:
            calls.append(threading.current_thread().name)
        stopped.set()

    previous = signal.getsignal(signal.SIGTERM)
    with StopSignals(on_stop):
        with lock:
            os.kill(os.getpid(), signal.SIGTERM)
            assert not stopped.wait(0.3)  # the handler ran here; the callback waits for the lock
        assert stopped.wait(5)
        stopped.clear()
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the same callback
        assert stopped.wait(5)
    assert calls == ["pgqueue-signals", "pgqueue-signals"]
    assert signal.getsignal(signal.SIGTERM) is previous  # restored on leaving
    assert not any(t.name == "pgqueue-signals" for t in threading.enumerate())
