"""Stop signals reach the stop callback on a thread of their own, each one counted
(``pgqueue._signals``)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

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


def test_signals_in_quick_succession_each_count_and_early_ones_wait_for_the_callback() -> None:
    """Each SIGTERM delivered is one call, and those received before
    :meth:`StopSignals.connect` are passed on when it comes (a Ctrl-C during the worker's
    start-up, before the worker exists)."""
    calls: list[int] = []
    third = threading.Event()

    def on_stop() -> None:
        calls.append(1)
        if len(calls) == 3:
            third.set()

    with StopSignals(restore=True) as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert not third.wait(0.2) and calls == []  # no callback yet: counted
        signals.connect(on_stop)
        os.kill(os.getpid(), signal.SIGTERM)
        assert third.wait(5)
    assert len(calls) == 3


def test_without_restore_a_late_signal_is_ignored() -> None:
    """``restore=False`` (the worker's command line): once left, a stop signal does nothing,
    so a late Ctrl-C raises no KeyboardInterrupt in a process on its way out."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        with StopSignals(lambda: None, restore=False):
            pass
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt by default
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_entering_off_the_main_thread_raises_and_leaves_no_thread() -> None:
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            with StopSignals(lambda: None):
                pass
        except ValueError as exc:
            errors.append(exc)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join(5)
    assert len(errors) == 1
    assert not any(t.name == "pgqueue-signals" for t in threading.enumerate())


@pytest.fixture(autouse=True)
def _no_leftover_wakeup_fd() -> object:
    yield None
    assert signal.set_wakeup_fd(-1) == -1  # every test left the wakeup fd as it found it
