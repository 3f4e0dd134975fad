"""Checks every test runs under: tier markers, timeouts that really end a test, leak checks.

Tiers
    A test's tier is the directory it lives in (``tests/unit``, ``tests/integration``,
    ``tests/process``, ``tests/chaos``); each test gets that tier's marker, so ``-m unit``
    selects a tier. ``slow`` is set by hand on tests measured to take seconds.

Timeouts
    pytest-timeout (``timeout`` in pyproject, signal method) fails a test that runs too long,
    with the stacks of all threads. A hang can outlive that failure: the test swallows the
    exception, SIGALRM is blocked, the main thread waits in C for a thread that never ends (a
    ``ThreadPoolExecutor`` around an ``asyncio.run`` whose loop cannot close). So each test
    also runs under a backstop ``timeout_backstop`` seconds later, armed twice: a watchdog
    thread that names the test, prints every thread's stack and ends the run with exit
    status 3, and ``faulthandler.dump_traceback_later`` a little later, which needs no GIL.
    After the session a watchdog gives the interpreter ``timeout_backstop`` seconds to exit
    (a non-daemon thread left behind would keep it alive) before doing the same.

Leaks
    A test fails (in its teardown) when it leaves a child process it started alive, or a
    thread that is non-daemon or named ``pgqueue*``, after a short grace. Connections to the
    test's database are checked by the database fixtures before they drop it
    (``Server.drop_unused_database``). Threads a wider-scoped fixture starts while a test
    runs are allowed by name, saying why:
    ``@pytest.mark.allow_leaks(threads="name-prefix", reason=...)``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import sys
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TextIO

import psutil
import pytest

TIERS = ("unit", "integration", "process", "chaos")
TESTS = Path(__file__).resolve().parent.parent
#: Seconds a test's threads and child processes get to end after its teardown.
LEAK_GRACE = 5.0
#: Exit status of a run ended by a backstop.
HUNG = 3


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "timeout_backstop",
        "seconds after a test's pytest-timeout before the run is ended with a stack dump",
        default="30",
    )


#: The real stderr, duplicated while output is not captured: a dump written to fd 2 during a
#: test would go to pytest's capture file, lost when the run is ended.
_stderr: TextIO = sys.stderr


def pytest_configure(config: pytest.Config) -> None:
    global _stderr
    _stderr = os.fdopen(os.dup(sys.__stderr__.fileno()), "w")
    for tier in TIERS:
        config.addinivalue_line("markers", f"{tier}: a test of the {tier} tier (tests/{tier})")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts if _inside(item) else ()
        if parts and parts[0] in TIERS:
            item.add_marker(parts[0])


def _inside(item: pytest.Item) -> bool:
    return Path(str(item.path)).resolve().is_relative_to(TESTS)


# -- timeouts ---------------------------------------------------------------------------------


def _timeout(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    given = item.config.getoption("timeout", None)
    if given is None:
        given = item.config.getini("timeout")
    return float(given or 0)


def _backstop(config: pytest.Config) -> float:
    return float(config.getini("timeout_backstop"))


def _end_run(why: str) -> None:
    """Print ``why`` and every thread's stack to stderr, then end the process at once."""
    _stderr.write(f"\n+++ {why}: stacks of all threads +++\n")
    _stderr.flush()
    faulthandler.dump_traceback(file=_stderr, all_threads=True)
    _stderr.flush()
    os._exit(HUNG)


class Watchdog:
    """A daemon thread that calls :func:`_end_run` unless :meth:`cancel` comes first."""

    def __init__(self, seconds: float, why: str) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, args=(seconds, why), name="test-watchdog", daemon=True
        )
        self._thread.start()

    def _watch(self, seconds: float, why: str) -> None:
        if not self._done.wait(seconds):
            _end_run(why)

    def cancel(self) -> None:
        self._done.set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Run one test (setup, call, teardown) under the backstops."""
    timeout = _timeout(item)
    if timeout <= 0:
        yield
        return
    bound = timeout + _backstop(item.config)
    watchdog = Watchdog(bound, f"{item.nodeid} still running {bound:g} s after it started")
    faulthandler.dump_traceback_later(bound + 5, exit=True, file=_stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        watchdog.cancel()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the interpreter ``timeout_backstop`` seconds to exit once the run is over."""
    seconds = _backstop(config)
    Watchdog(seconds, f"the test run did not exit {seconds:g} s after it finished")


# -- leaks -------------------------------------------------------------------------------------


def _children() -> dict[int, psutil.Process]:
    """Live descendants of this process, except PostgreSQL servers and their backends."""
    found: dict[int, psutil.Process] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and child.name() != "postgres":
                found[child.pid] = child
        except psutil.NoSuchProcess:
            pass
    return found


def _suspect(thread: threading.Thread) -> bool:
    return not thread.daemon or thread.name.startswith("pgqueue")


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test when it leaves a child process or a thread of its own behind."""
    marker = request.node.get_closest_marker("allow_leaks")
    allowed = ""
    if marker is not None:
        assert marker.kwargs.get("reason"), "allow_leaks needs reason=..."
        allowed = marker.kwargs["threads"]
    processes = set(_children())
    threads = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE
    while True:
        left = {pid: p for pid, p in _children().items() if pid not in processes}
        # a child of a process the test left behind is reported through its parent; one
        # started by a process older than the test (a module-scoped browser's helper
        # processes) belongs to that process, not to the test
        left = {
            pid: p
            for pid, p in left.items()
            if _safe_ppid(p) not in left and _safe_ppid(p) not in processes
        }
        stray = [
            t
            for t in threading.enumerate()
            if t not in threads and _suspect(t) and not (allowed and t.name.startswith(allowed))
        ]
        if not (left or stray) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    described = [f"process {p.pid} {_cmdline(p)}" for p in left.values()]
    described += [f"thread {t.name!r} (daemon={t.daemon})" for t in stray]
    for process in left.values():  # so the next tests do not inherit them
        _kill_tree(process)
    assert not described, "the test left behind: " + "; ".join(described)


def _safe_ppid(process: psutil.Process) -> int | None:
    try:
        return process.ppid()
    except psutil.NoSuchProcess:
        return None


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:200]
    except psutil.Error:
        return "(gone)"


def _kill_tree(process: psutil.Process) -> None:
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(family, timeout=5)
