"""The supervisor behind ``pgqueue-worker --processes N``: N worker processes, each replaced
when it exits.

* A child that reached ``--max-tasks`` exits 76 (:data:`EXIT_RECYCLE`) and is replaced at
  once, with ``--burst`` too: ``--burst`` means "until nothing is left", not "until each child
  has run its ``--max-tasks``". A child that exits 0 (``--burst``: it found nothing left to
  claim) is not replaced, and the supervisor exits 0 once every child has.
* A child that exits 75 ended itself to kill a job thread past its hard time limit
  (``--hard-time-limits``): it is replaced at once.
* A child that crashes (non-zero exit, or killed by a signal) is replaced after a backoff that
  doubles from 0.5 s to 30 s while children keep dying within ``min_uptime`` seconds of their
  start (a crash loop), and resets once one stays up.
* A child that exits with the usage or schema status (2, 4) cannot be helped by a restart: the
  supervisor stops the others and exits with that status.
* SIGTERM/SIGINT: the supervisor forwards SIGTERM to every child (each finishes or gives back
  its tasks within its ``--shutdown-timeout``) and exits 0 when all are gone; a second signal
  is forwarded too (children give back at once), a third kills them.

Children run in their own session, so a Ctrl-C in the terminal reaches them only through the
supervisor (once). The supervisor opens no database connection: the connection count is that
of N workers. Tasks a dead child was running are rescued by the other workers after its lease.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ._exits import EXIT_OK, EXIT_RECYCLE, EXIT_REPLACE, EXIT_SCHEMA, EXIT_USAGE

logger = logging.getLogger("pgqueue.supervisor")

#: Exit statuses after which restarting a child cannot help.
FATAL_EXITS = frozenset({EXIT_USAGE, EXIT_SCHEMA})
#: First and longest pause before replacing a crashed child, in seconds.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


#: Set in each child's environment to the supervisor's pid (see :func:`watch_supervisor`).
SUPERVISOR_PID_ENV = "PGQUEUE_SUPERVISOR_PID"


def supervised() -> bool:
    """Whether this process is a worker process run by a :class:`Supervisor`."""
    return bool(os.environ.get(SUPERVISOR_PID_ENV))


def watch_supervisor(on_gone: Callable[[], None], interval: float = 1.0) -> None:
    """In a child of :class:`Supervisor`: call ``on_gone`` once if the supervisor dies.

    Children run in sessions of their own (a Ctrl-C reaches them through the supervisor), so
    a supervisor killed with SIGKILL would leave them running with nobody to stop or replace
    them. A daemon thread compares the parent pid with :data:`SUPERVISOR_PID_ENV` every
    ``interval`` seconds; nothing happens when the variable is not set.
    """
    expected = os.environ.get(SUPERVISOR_PID_ENV)
    if not expected:
        return

    def watch() -> None:
        while os.getppid() == int(expected):
            time.sleep(interval)
        logger.error("the supervisor (pid %s) is gone; stopping this worker process", expected)
        on_gone()

    threading.Thread(target=watch, name="pgqueue-supervisor-watch", daemon=True).start()


@dataclass
class Child:
    """One worker process and when it started (monotonic seconds)."""

    slot: int
    process: subprocess.Popen[bytes]
    started: float


class Supervisor:
    """Run ``processes`` copies of ``command`` and keep them running.

    :param command: the argv of one worker process.
    :param processes: how many run at once (>= 1).
    :param env: their environment (default: this process's).
    :param burst: children exiting 0 are not replaced (``--burst``).
    :param min_uptime: seconds a child must stay up for its exit not to count as a crash loop.
    """

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
        burst: bool = False,
        min_uptime: float = 10.0,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.command = list(command)
        self.processes = processes
        self.env = dict(env) if env is not None else None
        self.burst = burst
        self.min_uptime = min_uptime
        self.restarts = 0
        self._children: dict[int, Child] = {}
        self._due: dict[int, float] = {}
        self._crashes: dict[int, int] = {}
        self._signals = 0
        self._forwarded = 0
        self._exit_code = EXIT_OK
        self._wake = threading.Event()

    def stop(self) -> None:
        """Ask the children to stop (again: at once; a third time: SIGKILL)."""
        self._signals += 1
        self._wake.set()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running children."""
        return [child.process.pid for child in self._children.values()]

    def run(self) -> int:
        """Supervise until stopped, or (burst) until every child is done; return the exit
        status: 0, or the fatal status a child exited with."""
        now = time.monotonic()
        self._due = {slot: now for slot in range(self.processes)}
        while True:
            self._wake.clear()
            self._forward_signals()
            self._reap()
            stopping = self._signals > 0 or self._exit_code != EXIT_OK
            if stopping:
                self._due.clear()
            if not self._children and not self._due:
                return self._exit_code
            now = time.monotonic()
            for slot, due in sorted(self._due.items()):
                if due <= now:
                    del self._due[slot]
                    self._spawn(slot)
            self._wake.wait(0.1)

    def _spawn(self, slot: int) -> None:
        env = dict(self.env if self.env is not None else os.environ)
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        process = subprocess.Popen(self.command, env=env, start_new_session=True)
        self._children[slot] = Child(slot, process, time.monotonic())
        logger.info("started worker process %d (pid %d)", slot, process.pid)

    def _reap(self) -> None:
        for slot, child in list(self._children.items()):
            code = child.process.poll()
            if code is None:
                continue
            del self._children[slot]
            self._exited(child, code)

    def _exited(self, child: Child, code: int) -> None:
        uptime = time.monotonic() - child.started
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
        stopping = self._signals > 0 or self._exit_code != EXIT_OK
        if stopping:
            logger.info("worker process %d (pid %d) %s", child.slot, child.process.pid, how)
        elif code == EXIT_REPLACE:
            logger.warning(
                "worker process %d (pid %d) exited to kill a job past its time limit; replacing it",
                child.slot,
                child.process.pid,
            )
            self._restart(child.slot, 0.0)
        elif code == EXIT_RECYCLE:
            self._crashes[child.slot] = 0
            logger.info(
                "worker process %d (pid %d) reached --max-tasks; replacing it",
                child.slot,
                child.process.pid,
            )
            self._restart(child.slot, 0.0)
        elif code == EXIT_OK:
            self._crashes[child.slot] = 0
            if not self.burst:
                logger.info(
                    "worker process %d (pid %d) %s; replacing it",
                    child.slot,
                    child.process.pid,
                    how,
                )
                self._restart(child.slot, 0.0)
        elif code in FATAL_EXITS:
            logger.error(
                "worker process %d (pid %d) %s: a restart cannot fix that; stopping",
                child.slot,
                child.process.pid,
                how,
            )
            self._exit_code = code
            self._signal_children(signal.SIGTERM)
        else:
            crashes = self._crashes.get(child.slot, 0) + 1 if uptime < self.min_uptime else 1
            self._crashes[child.slot] = crashes
            delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (crashes - 1))
            logger.warning(
                "worker process %d (pid %d) %s after %.1fs; replacing it in %.1fs",
                child.slot,
                child.process.pid,
                how,
                uptime,
                delay,
            )
            self._restart(child.slot, delay)

    def _restart(self, slot: int, delay: float) -> None:
        self.restarts += 1
        self._due[slot] = time.monotonic() + delay

    def _forward_signals(self) -> None:
        while self._forwarded < self._signals:
            self._forwarded += 1
            kind = signal.SIGKILL if self._forwarded >= 3 else signal.SIGTERM
            logger.info("stopping %d worker processes (%s)", len(self._children), kind.name)
            self._signal_children(kind)

    def _signal_children(self, kind: signal.Signals) -> None:
        for child in self._children.values():
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, kind)
