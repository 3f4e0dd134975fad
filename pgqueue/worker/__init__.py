"""The worker: claims tasks, runs them, records how they ended.

One worker process (:class:`Worker`) is a few small services, each in its own module, all
with the lifecycle of :class:`pgqueue._service.Service` (``start``, ``stop(timeout)``,
``wait``, ``started``, ``run_once``). None calls back into the Worker: each is given, when
built, the callbacks it reports to, and the Worker only wires them and owns the shutdown.

* the **claimer** (:mod:`~pgqueue.worker.claimer`, on the thread calling :meth:`Worker.run`):
  claims up to its free slots with ``SELECT ... FOR UPDATE SKIP LOCKED`` when woken, and
  sleeps until a notification, a freed slot, the next delayed task or ``poll_timeout``;
* the **listener** (:mod:`~pgqueue.worker.listener`): LISTENs on ``<queue>_task_queued`` and
  ``<queue>_task_revoke``; wakes the claimer, tells the executor of revokes;
* the **executor** (:mod:`~pgqueue.worker.executor`): a thread pool of ``backlog`` threads for
  ``def`` jobs and one event loop thread for ``async def`` jobs; it keeps the ledger of the
  tasks in flight and, with ``hard_time_limits``, a watchdog thread;
* the **completer** (:mod:`~pgqueue.worker.completer`): writes finished tasks in batches, one
  statement per batch, fenced on the attempt. A slot frees when its job returns, so claiming
  the next tasks overlaps writing the last outcomes; at most ``backlog`` returned tasks wait
  for that write, and a task counts as done (logs, ``wait_for_task``, shutdown,
  ``max_tasks`` exit) only once it has committed;
* the **heartbeat** (:mod:`~pgqueue.worker.heartbeat`): refreshes the worker's row every
  ``lease/4`` seconds on its own connection, so a busy claimer or a job holding the GIL in
  bursts cannot starve it; it also picks up revoke requests for running tasks that a missed
  notification did not deliver;
* **maintenance** (:mod:`~pgqueue.worker.maintenance`): rescues the tasks of lost workers
  every ``lease/4`` seconds (:mod:`pgqueue._rescuer`) and revokes expired tasks every
  ``poll_timeout`` seconds, once before the first claim and then on its own thread;
* optionally the **scheduler** (:mod:`pgqueue._scheduler`, ``schedule_periodic``) and the
  **pruner** (:mod:`pgqueue._pruner`, ``prune_after``).

Claims and written outcomes are reported to :attr:`Worker.events`
(:class:`~pgqueue.worker.events.WorkerEvents`), which the metrics subscribe to.

On :meth:`Worker.stop` (SIGTERM/SIGINT) the claimer stops, running tasks may finish for up to
``shutdown_timeout`` seconds, then the unfinished ones are given back (QUEUED, or RETRY after
an earlier failed attempt) with their attempt handed back; a second stop gives back at once.

Connections per worker process: 2 (one for the claimer, which maintenance shares between
claims, and one for the completer) + 1 (listener) + 1 (heartbeat), plus the pool of the
:class:`~pgqueue.TaskBackend` that jobs use through ``consumer.backend`` (opened only if a
job uses it; at most 2). So at most 6; 7 with ``schedule_periodic``, whose scheduler queues
periodic jobs' ticks on its own connection; one more with ``prune_after``, whose pruner
deletes old finished tasks in small batches on its own connection, apart from the claim path.
"""

from .claimer import claim_session
from .runner import Worker

__all__ = ["Worker", "claim_session"]
