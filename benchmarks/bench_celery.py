"""Celery's figures on Redis: ``delay()`` one at a time, a drain by one worker, pickup latency.

Worker settings: the ``threads`` pool with ``concurrency=20``, the concurrency every system
gets. Celery's own default is prefork (for CPU-bound work) and its docs send I/O-bound work to
the greenlet pools; for short, I/O-light jobs the thread pool is the built-in choice: no
monkey-patching, no extra package, and one worker process like every other system's (prefork
would fork 20 children on a 2-core machine; tried side by side while writing this, it drained
no faster than the threads).
``task_acks_late=True``, so a job is acknowledged after it ran and comes back if the worker
dies mid-job — the at-least-once delivery pgqueue, procrastinate and dramatiq give (Celery's
default acknowledges before running). ``worker_prefetch_multiplier=4`` (its default: 80
messages prefetched), no result backend (``task_ignore_result``), JSON serializer (its
default), the Redis transport's defaults otherwise. Mingle and gossip are off
(``--without-mingle --without-gossip``): they exchange state between several workers and
mingle alone waits about a second at start for replies that a lone worker never gets.

Bulk enqueue is not measured: Celery has no bulk publish (``group(...).apply_async()`` still
publishes one message per job), so the column stays empty.

Drain: ``--jobs`` no-op jobs are queued first, then a worker starts in its own process (a real
``celery worker``, built with ``app.Worker`` as the command line builds it). It is timed from
just before the worker starts until the last job returned; jobs are counted in that process
(:class:`benchmarks.common.Countdown`: a lock and an addition per job, no I/O), the same
counting dramatiq's figure uses. Afterwards the queue and Celery's unacknowledged-message hash
must be empty.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from typing import Any

from .common import ROOT, Countdown, PickupWorker, Row, Sizes, child_env, rate, timer

CONCURRENCY = 20
#: Seconds a drain may take before the run fails (a healthy one takes a few seconds).
DRAIN_TIMEOUT = 120.0
QUEUE = "celery"  # Celery's default queue: a Redis list of that name
NO_BULK = "enqueue/s bulk not measured: Celery has no bulk publish (a group sends one by one)"

_countdown: Countdown | None = None  # set in the drain worker's process only


def make_app(redis_url: str) -> Any:
    """The Celery app every measurement uses, with tasks ``noop`` and ``pickup(key)``."""
    from celery import Celery

    app = Celery("pgqueue_bench", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=4,
        worker_redirect_stdouts=False,  # STARTED lines must reach stdout unchanged
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="noop", shared=False)
    def noop() -> None:
        if _countdown is not None:
            _countdown.hit()

    @app.task(name="pickup", shared=False)
    def pickup(key: str) -> None:
        print(f"STARTED {key} {time.time()!r}", flush=True)

    return app


def start_worker(app: Any) -> None:
    """Run a worker of ``app`` in this process until SIGTERM (warm shutdown)."""
    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", category=SecurityWarning)  # root in containers and CI
    worker = app.Worker(
        pool_cls="threads",
        concurrency=CONCURRENCY,
        loglevel="WARNING",
        without_mingle=True,
        without_gossip=True,
        quiet=True,
    )
    worker.start()


def drain_worker(redis_url: str, total: int, timeout: float) -> None:
    """Runs in the drain subprocess: a worker that prints ``DRAINED <seconds>`` once it has
    run ``total`` jobs (``TIMEOUT <count>`` after ``timeout`` seconds), then stops."""
    global _countdown
    app = make_app(redis_url)
    countdown = _countdown = Countdown(total)

    def watch(start: float) -> None:
        if countdown.wait(timeout):
            print(f"DRAINED {countdown.finished - start!r}", flush=True)
        else:
            print(f"TIMEOUT {countdown.count}", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # warm shutdown: the worker returns

    start = time.perf_counter()
    threading.Thread(target=watch, args=(start,), daemon=True).start()
    start_worker(app)


def pickup_worker(redis_url: str) -> None:
    """Runs in the pickup subprocess: an idle worker printing when each job starts."""
    start_worker(make_app(redis_url))


def _drain(redis_url: str, total: int) -> float:
    """Run the drain subprocess on the pre-filled queue; jobs/s."""
    args = ["celery-drain", redis_url, str(total), repr(DRAIN_TIMEOUT)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.worker_proc", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )
    try:
        out, _ = proc.communicate(timeout=DRAIN_TIMEOUT + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(
            f"celery drain worker did not stop within {DRAIN_TIMEOUT + 60:g} s"
        ) from None
    words = {p[0]: p[-1] for p in (line.split() for line in out.splitlines()) if p}
    if "TIMEOUT" in words:
        raise RuntimeError(
            f"celery drain: {words['TIMEOUT']} of {total} jobs ran within {DRAIN_TIMEOUT:g} s"
        )
    if "DRAINED" not in words:
        raise RuntimeError(f"celery drain worker exited (status {proc.returncode}): {out!r}")
    return rate(total, float(words["DRAINED"]))


def _check_empty(client: Any) -> None:
    left = client.llen(QUEUE) + client.hlen("unacked")
    if left:
        raise RuntimeError(f"celery drain left {left} messages queued or unacknowledged")


def run(redis_url: str, sizes: Sizes, row: Row) -> None:
    """One run of every Celery measurement on the empty Redis database ``redis_url``."""
    import redis

    app = make_app(redis_url)
    noop, pickup = app.tasks["noop"], app.tasks["pickup"]
    client = redis.Redis.from_url(redis_url)
    try:
        with timer() as elapsed:
            for _ in range(sizes.single):
                noop.delay()
        row.enqueue_one.append(rate(sizes.single, elapsed()))
        client.delete(QUEUE)
        if NO_BULK not in row.notes:
            row.notes.append(NO_BULK)

        with app.producer_or_acquire() as producer:  # untimed pre-fill
            for _ in range(sizes.jobs):
                noop.apply_async(producer=producer)
        row.drain.append(_drain(redis_url, sizes.jobs))
        _check_empty(client)

        worker = PickupWorker("celery", redis_url)
        try:
            row.pickup += worker.measure(lambda key: pickup.delay(key), sizes.samples)
        finally:
            worker.close()
    finally:
        client.close()
        app.close()
