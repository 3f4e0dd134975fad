"""The parts of :class:`pgqueue.TaskBackend`, one module each, combined as mixins by
:mod:`pgqueue._backend`: the shared core (settings, registry, pool, errors), reads and waits,
the enqueue forms, the workflow canvas, the asyncio twins, administration (flush, revoke,
flow control) and the inspection of jobs and schedules."""
