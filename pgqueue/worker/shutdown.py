"""A worker's shutdown: the stop requests it received, the wait for running jobs, and the
sequence that stops the services, writes the outcomes held, gives back the rest and signs off.

The first :meth:`Shutdown.request` stops claims and lets running tasks finish for up to
``shutdown_timeout`` seconds; a second gives them back at once (the second Ctrl-C).
"""

from __future__ import annotations

import logging
import threading
import time

from .wiring import Services

logger = logging.getLogger("pgqueue.worker")


class Shutdown:
    """The stop requests of one worker and how long it still waits for running jobs."""

    def __init__(self, shutdown_timeout: float) -> None:
        self.shutdown_timeout = shutdown_timeout
        #: Set by the first request: no more claims.
        self.stopping = threading.Event()
        #: Set by the second request: give back at once, wait for nothing.
        self.abort = threading.Event()
        self._deadline: float | None = None

    def request(self, running: int, in_flight: int) -> None:
        """A stop was asked for, with ``running`` jobs and ``in_flight`` tasks not yet
        recorded: the first starts the shutdown timeout, the second aborts the wait."""
        if self.stopping.is_set():
            logger.warning("stopping at once: giving back %d running tasks", running)
            self.abort.set()
        else:
            logger.info(
                "stopping: no more claims; waiting up to %.1fs for %d running tasks "
                "(%d finished, their outcomes being recorded)",
                self.shutdown_timeout,
                running,
                in_flight - running,
            )
            self._deadline = time.monotonic() + self.shutdown_timeout
            self.stopping.set()

    def drain(self, services: Services) -> None:
        """Wait for running jobs: for ever after ``max_tasks``, until the shutdown deadline
        after a stop, not at all after a second stop. Outcomes still to be written are the
        business of :meth:`record_outcomes`."""
        while services.executor.running and not self.abort.is_set():
            deadline = self._deadline
            if deadline is not None and time.monotonic() >= deadline:
                logger.warning(
                    "shutdown timeout (%.1fs) passed with %d tasks running",
                    self.shutdown_timeout,
                    services.executor.running,
                )
                return
            services.claimer.sleep(0.2)  # woken by every write

    def shut_down(self, services: Services, worker_id: str, lease: float) -> int:
        """Stop the services; write the outcomes held and those that came in late, give back
        the rest, and mark the row stopped (unless an overrunning thread lives: F22). Returns
        how many tasks were given back."""
        given_back = 0
        for service in (*services.extras, services.maintenance):
            service.stop()
        self.record_outcomes(services, lease)
        services.heartbeat.stop()
        services.completer.give_up()  # a write still retrying gives up: the lease covers it
        services.completer.write_late()  # jobs that returned meanwhile are not given back
        unfinished = services.executor.take_unfinished()
        if unfinished:
            given_back = services.completer.give_back(unfinished, lease)
        services.listener.stop()
        services.executor.stop()
        if services.executor.overran:
            logger.warning(
                "worker %s is not marked stopped: its overrunning tasks are rescued %.1fs "
                "after its last heartbeat, once this process (and their threads) has ended",
                worker_id,
                lease,
            )
        else:
            services.heartbeat.sign_off()
        services.claim_pool.close()
        services.finish_pool.close()
        services.activity.stop()  # the last summary line: every outcome is written by now
        return given_back

    def record_outcomes(self, services: Services, lease: float) -> None:
        """Let the completer write every outcome it holds (jobs that returned) before the
        worker goes (F25): as long as the heartbeat keeps this worker's lease (a write blocked
        behind another session's lock may take a while, and those tasks must not be rescued
        and run again), until a second stop, or until the lease ran out."""
        completer, heartbeat, executor = services.completer, services.heartbeat, services.executor
        completer.stop(timeout=0)
        warned = time.monotonic()
        while not completer.wait(0.2):
            now = time.monotonic()
            if self.abort.is_set():
                return
            if now - heartbeat.beaten_at > lease:
                logger.error(
                    "giving up recording the outcomes of %d finished tasks: no heartbeat for "
                    "%.1fs, the lease is gone",
                    executor.in_flight - executor.running,
                    now - heartbeat.beaten_at,
                )
                return
            if now - warned >= 5:
                warned = now
                logger.warning(
                    "still recording the outcomes of %d finished tasks (is the write waiting "
                    "for a lock?); waiting while the heartbeat holds the lease; stop again to "
                    "give up",
                    executor.in_flight - executor.running,
                )
