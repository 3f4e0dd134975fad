"""dramatiq's figures on Redis: ``send()`` one at a time, a drain by one worker, pickup latency.

Worker settings: ``dramatiq.Worker`` with ``worker_threads=20``, the concurrency every system
gets, on a ``RedisBroker`` with its default middleware (age and time limits, retries, ...);
prefetch, acknowledgement and idle polling as dramatiq sets them: 40 messages prefetched
(twice the threads), a message acknowledged after its job ran, JSON messages (its default
encoder). An idle consumer polls Redis (no blocking pop) with a backoff that doubles from
5-10 ms up to ``worker_timeout`` (its default, 1 s), so pickup latency grows with the time the
worker was idle: the pickup figure, with a job 10 ms after the previous one ran, sees the first
steps of that backoff; a worker idle for seconds answers within up to 1 s.

Bulk enqueue is not measured: dramatiq has no bulk send (``group(...).run()`` sends one
message per job), so the column stays empty.

Drain: ``--jobs`` no-op jobs are queued first, then the worker starts in this process; it is
timed from just before ``Worker.start()`` until the last job returned, counting jobs in the
process (:class:`benchmarks.common.Countdown`: a lock and an addition per job, no I/O), the
same counting Celery's figure uses. Afterwards the queue, including messages taken but not
acknowledged, must be empty.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from .common import Countdown, PickupWorker, Row, Sizes, rate, timer

CONCURRENCY = 20
#: Seconds a drain may take before the run fails (a healthy one takes a few seconds).
DRAIN_TIMEOUT = 120.0
QUEUE = "default"
NO_BULK = "enqueue/s bulk not measured: dramatiq has no bulk send (a group sends one by one)"

_countdown: Countdown | None = None  # set while this process drains


def _noop() -> None:
    if _countdown is not None:
        _countdown.hit()


def _pickup(key: str) -> None:
    print(f"STARTED {key} {time.time()!r}", flush=True)


def make_broker(redis_url: str) -> tuple[Any, dict[str, Any]]:
    """A ``RedisBroker`` on ``redis_url`` and its actors ``noop`` and ``pickup(key)``."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=redis_url)
    actors = {
        name: dramatiq.actor(actor_name=name, queue_name=QUEUE, broker=broker)(fn)
        for name, fn in (("noop", _noop), ("pickup", _pickup))
    }
    return broker, actors


def _drain(broker: Any, total: int) -> float:
    """Start a worker on the pre-filled queue and time it until ``total`` jobs ran; jobs/s."""
    global _countdown
    from dramatiq import Worker

    countdown = _countdown = Countdown(total)
    try:
        start = time.perf_counter()
        worker = Worker(broker, worker_threads=CONCURRENCY)
        worker.start()
        try:
            if not countdown.wait(DRAIN_TIMEOUT):
                raise RuntimeError(
                    f"dramatiq drain: {countdown.count} of {total} jobs ran within "
                    f"{DRAIN_TIMEOUT:g} s"
                )
        finally:
            worker.stop()
    finally:
        _countdown = None
    left = broker.do_qsize(QUEUE)
    if left:
        raise RuntimeError(f"dramatiq drain left {left} messages queued or unacknowledged")
    return rate(total, countdown.finished - start)


def pickup_worker(redis_url: str) -> None:
    """Runs in the pickup subprocess: an idle worker printing when each job starts."""
    from dramatiq import Worker

    broker, _ = make_broker(redis_url)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the worker on terminate
    worker = Worker(broker, worker_threads=CONCURRENCY)
    worker.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        worker.stop()


def run(redis_url: str, sizes: Sizes, row: Row) -> None:
    """One run of every dramatiq measurement on the empty Redis database ``redis_url``."""
    broker, actors = make_broker(redis_url)
    noop, pickup = actors["noop"], actors["pickup"]
    try:
        with timer() as elapsed:
            for _ in range(sizes.single):
                noop.send()
        row.enqueue_one.append(rate(sizes.single, elapsed()))
        broker.flush(QUEUE)
        if NO_BULK not in row.notes:
            row.notes.append(NO_BULK)

        for _ in range(sizes.jobs):  # untimed pre-fill
            noop.send()
        row.drain.append(_drain(broker, sizes.jobs))

        worker = PickupWorker("dramatiq", redis_url)
        try:
            row.pickup += worker.measure(lambda key: pickup.send(key), sizes.samples)
        finally:
            worker.close()
    finally:
        broker.close()
