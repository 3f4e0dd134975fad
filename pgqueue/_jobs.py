"""Jobs and the job registry (pulsar's ``Job`` and ``JobRegistry``).

A job is the code a task runs. Define one by subclassing :class:`Job`::

    class Resize(pgqueue.Job):
        timeout = 3600          # default expiry: revoke if not started within an hour
        can_overlap = False     # at most one live task per kwargs

        def __call__(self, consumer, path: str) -> dict:
            ...

or by decorating a plain function ``def fn(consumer, **kwargs)`` with :func:`job`.
``async def`` jobs work in both forms. Workers find jobs by importing the modules named
in ``task_paths`` (:meth:`JobRegistry.load`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import KW_ONLY, dataclass, fields
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Protocol, TypeVar

from ._arguments import ArgumentCheck
from ._bulk import Call
from ._errors import ConfigurationError, TaskNotAvailable
from ._retry import DEFAULT_BACKOFF, Backoff
from ._typed import EnqueueOptions, Enqueuer, TaskId

Overlap = bool | Callable[..., bool]
#: A job's ``limit_key``: the name of one of its kwargs, or a callable taking the kwargs (as
#: keywords, like ``can_overlap``) and returning a str.
LimitKey = str | Callable[..., str]
P = ParamSpec("P")
R = TypeVar("R")
OptionsP = ParamSpec("OptionsP")
OptionsT = TypeVar("OptionsT", bound="JobOptions")
JobT = TypeVar("JobT", bound="Job")
#: What a job is called with: a :class:`pgqueue.TaskConsumer`. That class holds a
#: :class:`pgqueue.TaskBackend` (the client layer), which this core module does not import:
#: jobs are typed with ``Any`` here, and a job may annotate its own ``consumer`` precisely.
Consumer = Any


def to_seconds(value: float | timedelta | None, what: str) -> float | None:
    """Return ``value`` (seconds or a timedelta) as float seconds; None stays None.

    Raises :class:`ConfigurationError` for negative or non-numeric values.
    """
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ConfigurationError(f"{what} must be seconds >= 0 or a timedelta, not {value!r}")
    return float(seconds)


@dataclass(eq=False, repr=False)
class JobOptions:
    """The options of a job, declared once: the class attributes every :class:`Job` has (a
    subclass overrides them in its body), and the arguments of :func:`job` and
    :func:`pgqueue.periodic_job` (which make a :class:`JobOptions` and copy it onto the job).

    * ``name`` (str): the name tasks are queued under; default the class name lower-cased
      (the function's name for :func:`job`).
    * ``timeout`` (seconds or timedelta): the default expiry. A task not started within
      ``timeout`` of being queued becomes ``REVOKED`` without running. None: never expires.
    * ``can_overlap`` (bool, or a callable taking the task kwargs and returning bool): when
      False, at most one live (QUEUED/STARTED/RETRY) task may exist per job name and kwargs;
      the database's partial unique index on ``lock_id`` enforces it.
    * ``queue`` (str | None): the queue tasks go to; None means the backend's name.
    * ``priority`` (int): higher runs first; default 0.
    * ``max_retries`` (int): how many more attempts after the first; default 0.
    * ``retry_on`` (tuple of exception types): which exceptions lead to a retry while attempts
      remain (default ``(Exception,)``); :class:`pgqueue.Retry` always does.
    * ``backoff``: seconds to wait before the next attempt, called as ``job.backoff(attempt)``
      with the number of the attempt that failed (1 first): an object such as
      ``ExponentialBackoff(base=5)``, or a method ``def backoff(self, attempt) -> float``.
      Default :data:`pgqueue._retry.DEFAULT_BACKOFF` (1 s doubling to 10 min, with jitter).
    * ``time_limit`` (seconds or timedelta): the most run time of one attempt. ``async`` jobs
      are cancelled at the limit; thread jobs are told through ``consumer.check()`` /
      ``consumer.is_revoked()`` (cooperative). The attempt then fails (or retries) with
      ``TimeLimitExceeded``. None: no limit.
    * ``concurrency`` (int >= 1 | None): at most this many tasks of the job STARTED at once,
      across all workers, per ``limit_key`` value when the job has one (issue 13). The claim
      enforces it in the database; a task that may not start stays QUEUED. The value is
      stored on each task when it is queued. None: no limit.
    * ``rate_limit`` ((int >= 1, seconds > 0) | None): at most that many starts of the job in
      any window of that many seconds, per ``limit_key`` value when the job has one,
      across all workers, on the database clock (issue 13); stored on each task when queued.
    * ``limit_key`` (str | callable | None): what the job's limits apply per: the name of one
      of its kwargs (its value, a str or an int, is the key) or a callable taking the kwargs
      as keywords and returning a str. Evaluated at enqueue and stored in ``task.limit_key``.
      None: the limits apply to the job as a whole.
    * ``run_after_failure`` (bool): a task of this job queued with ``depends_on`` runs even
      when a parent ends FAILURE or REVOKED (it sees them in ``consumer.parent_results()``);
      default False: such a task ends REVOKED without running (issue 14, workflows).

    * ``unique_for`` (seconds > 0 or timedelta | None): after a task of the job starts, a copy
      (same job and kwargs: its lock_id) is refused (enqueue returns None) for that long,
      finished or not, besides while it lives; implies ``can_overlap = False`` (issue 13).

    ``concurrency``, ``rate_limit``, ``limit_key`` and ``unique_for`` are checked when the
    job is defined
    (:func:`check_flow_options`); ``timeout`` and ``time_limit`` raise
    :class:`ConfigurationError` when first read as seconds (:meth:`Job.expiry_seconds`).
    """

    name: str | None = None
    timeout: float | timedelta | None = None
    can_overlap: Overlap = True
    _: KW_ONLY
    queue: str | None = None
    priority: int = 0
    max_retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: Backoff = DEFAULT_BACKOFF
    time_limit: float | timedelta | None = None
    concurrency: int | None = None
    rate_limit: tuple[int, float] | None = None
    limit_key: LimitKey | None = None
    unique_for: float | timedelta | None = None
    run_after_failure: bool = False


def check_flow_options(job: JobOptions, what: str) -> None:
    """Raise :class:`ConfigurationError` unless the flow options of ``what`` (``"job 'x'"``,
    named so in the message) are valid:
    ``concurrency`` None or an int >= 1, ``rate_limit`` None or (int >= 1, seconds > 0),
    ``limit_key`` None, a non-empty str or a callable."""
    if job.concurrency is not None and not _positive_int(job.concurrency):
        raise ConfigurationError(
            f"{what}: concurrency must be an int >= 1 (or None for no limit), "
            f"not {job.concurrency!r}"
        )
    rate = job.rate_limit
    if rate is not None and not (
        isinstance(rate, tuple)
        and len(rate) == 2
        and _positive_int(rate[0])
        and not isinstance(rate[1], bool)
        and isinstance(rate[1], int | float)
        and 0 < rate[1] < float("inf")
    ):
        raise ConfigurationError(
            f"{what}: rate_limit must be (starts, seconds) with starts an int >= 1 and "
            f"seconds > 0 (or None for no limit), not {rate!r}"
        )
    key = job.limit_key
    if job.unique_for is not None and not to_seconds(job.unique_for, f"{what}: unique_for"):
        raise ConfigurationError(f"{what}: unique_for must be more than 0 seconds")
    if key is not None and not callable(key) and not (isinstance(key, str) and key):
        raise ConfigurationError(
            f"{what}: limit_key must be the name of a kwarg or a callable taking the "
            f"kwargs and returning a str, not {key!r}"
        )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def copy_options(target: object, options: object, kind: type) -> None:
    """Set on ``target`` every field of the dataclass ``kind`` to its value in ``options``
    (instance attributes shadow the class defaults for this one job)."""
    for field in fields(kind):
        setattr(target, field.name, getattr(options, field.name))


class Job(JobOptions):
    """Base class of every job (pulsar's ``Job``).

    Its options are class attributes (all optional), listed and explained at
    :class:`JobOptions`: ``name``, ``timeout``, ``can_overlap``, ``queue``, ``priority``,
    ``max_retries``, ``retry_on``, ``backoff``, ``time_limit``, ``concurrency``,
    ``rate_limit``, ``limit_key``, ``unique_for`` and ``run_after_failure``.

    Subclasses implement ``__call__(self, consumer, **kwargs)`` returning a JSON-serializable
    result, or ``async def __call__``.
    """

    name: str = ""
    #: ``"regular"``, or ``"periodic"`` for :class:`pgqueue.PeriodicJob` (pulsar's ``Job.type``).
    type: ClassVar[str] = "regular"

    def __init__(self) -> None:
        """A job takes no arguments: its options are class attributes."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__.lower()
        check_flow_options(cls, f"job {cls.name!r}")  # type: ignore[arg-type]

    def __call__(self, consumer: Consumer, **kwargs: Any) -> Any:
        raise NotImplementedError(f"job {self.name!r} does not implement __call__")

    @cached_property
    def is_async(self) -> bool:
        """True when calling the job returns a coroutine (``async def``); asked once."""
        return inspect.iscoroutinefunction(self.run_function)

    @property
    def run_function(self) -> Callable[..., Any]:
        """The callable that runs the job: ``self.__call__`` for class-based jobs."""
        return self.__call__

    @property
    def doc(self) -> str:
        """The job's own docstring (its class's, or its function's), or an empty string."""
        return (type(self).__doc__ and inspect.getdoc(type(self))) or ""

    def expiry_seconds(self) -> float | None:
        """The default expiry (``timeout``) in seconds, or None."""
        if self.timeout is None:
            return None
        return to_seconds(self.timeout, f"{self.name}.timeout")

    def time_limit_seconds(self) -> float | None:
        """The ``time_limit`` in seconds, or None (asked once per task run)."""
        if self.time_limit is None:
            return None
        return to_seconds(self.time_limit, f"{self.name}.time_limit")

    @cached_property
    def argument_check(self) -> ArgumentCheck:
        """The job's parameters after the consumer, read once: called with a task's kwargs it
        raises :class:`pgqueue._errors.JobArgumentError` unless they fit (see
        :mod:`pgqueue._arguments`)."""
        return ArgumentCheck(self.name, self.run_function)

    @cached_property
    def logger(self) -> logging.Logger:
        """The logger of this job's runs: ``pgqueue.job.<name>``."""
        return logging.getLogger(f"pgqueue.job.{self.name}")

    def overlaps(self, kwargs: dict[str, Any]) -> bool:
        """Resolve ``can_overlap`` for these kwargs (a callable receives them as keywords);
        False whenever the job has a ``unique_for`` window."""
        if self.unique_for is not None:
            return False
        overlap = self.can_overlap
        return bool(overlap(**kwargs)) if callable(overlap) else bool(overlap)

    def limit_key_of(self, kwargs: dict[str, Any]) -> str | None:
        """The ``limit_key`` value of a task with these kwargs (None when the job has no
        ``limit_key``). Raises :class:`ConfigurationError` when the named kwarg is missing or
        not a str or int, or when the callable raises or returns anything but a str."""
        key = self.limit_key
        if key is None:
            return None
        if isinstance(key, str):
            if key not in kwargs:
                raise ConfigurationError(
                    f"job {self.name!r} is limited per {key!r}, but the task has no argument "
                    f"{key!r}; nothing was queued"
                )
            value = kwargs[key]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ConfigurationError(
                    f"job {self.name!r}: the limit_key argument {key!r} must be a str or an "
                    f"int, not {type(value).__name__}; nothing was queued"
                )
            return str(value)
        try:
            found = key(**kwargs)
        except Exception as exc:
            raise ConfigurationError(
                f"job {self.name!r}: its limit_key callable raised {type(exc).__name__}: "
                f"{exc}; nothing was queued"
            ) from exc
        if not isinstance(found, str):
            raise ConfigurationError(
                f"job {self.name!r}: its limit_key callable must return a str, not "
                f"{type(found).__name__} ({found!r:.60}); nothing was queued"
            )
        return found


class FunctionJob(Job, Generic[P, R]):
    """A job made from a plain function by :func:`job`; calling it calls the function.

    Generic over the function's parameters after the consumer (``P``) and its return type
    (``R``), so type checkers see the function's own signature, and check typed enqueue:
    :meth:`enqueue`, :meth:`aenqueue`, :meth:`call` and :meth:`options` (see
    :mod:`pgqueue._typed`).
    """

    def __init__(
        self, func: Callable[Concatenate[Consumer, P], R], options: JobOptions | None = None
    ) -> None:
        self.func = func
        copy_options(self, options or JobOptions(), JobOptions)
        self.name = self.name or func.__name__.lower()
        check_flow_options(self, f"job {self.name!r}")
        self.__doc__ = func.__doc__
        self.__module__ = func.__module__

    def __call__(self, consumer: Consumer, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(consumer, *args, **kwargs)

    @property
    def run_function(self) -> Callable[..., Any]:
        return self.func

    def options(
        self,
        *,
        meta_params: dict[str, Any] | None = None,
        expiry: float | timedelta | datetime | None = None,
        run_at: datetime | None = None,
        countdown: float | timedelta | str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: object | None = None,
    ) -> EnqueueOptions[P]:
        """This job with enqueue options fixed; the options mean what the arguments of
        :meth:`TaskBackend.queue_task` of the same names mean (None: the job's default).
        ``resize.options(countdown="5m").enqueue(backend, path="a.png", width=200)``."""
        return EnqueueOptions(
            self, meta_params, expiry, run_at, countdown, queue, priority, connection
        )

    def enqueue(self, backend: Enqueuer, /, *args: P.args, **kwargs: P.kwargs) -> TaskId | None:
        """Queue a task of this job on ``backend`` with the function's own arguments (after
        the consumer), checked by type checkers and at run time; return its
        :data:`~pgqueue._typed.TaskId`, or None when the job cannot overlap and a live task
        with the same arguments exists. Raises what :meth:`TaskBackend.queue_task` raises."""
        return EnqueueOptions[P](self).enqueue(backend, *args, **kwargs)

    async def aenqueue(
        self, backend: Enqueuer, /, *args: P.args, **kwargs: P.kwargs
    ) -> TaskId | None:
        """Awaitable :meth:`enqueue` (the backend's async pool)."""
        return await EnqueueOptions[P](self).aenqueue(backend, *args, **kwargs)

    def call(self, *args: P.args, **kwargs: P.kwargs) -> Call:
        """One task of this job as a :class:`pgqueue.Call` for ``backend.queue_many``."""
        return EnqueueOptions[P](self).call(*args, **kwargs)

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.func) or ""

    def __repr__(self) -> str:
        return f"<job {self.name} ({self.func.__module__}.{self.func.__qualname__})>"


def decorator_of(
    options: Callable[P, OptionsT], make: Callable[[Callable[..., Any], OptionsT], JobT], name: str
) -> Callable[P, Callable[[Callable[..., Any]], JobT]]:
    """A decorator factory called ``name`` that takes the arguments of ``options`` (a
    :class:`JobOptions` class) and gives ``make(function, options)``. Wrong arguments raise
    :class:`TypeError` when the factory is called, as for any call."""

    def factory(*args: P.args, **kwargs: P.kwargs) -> Callable[[Callable[..., Any]], JobT]:
        given = options(*args, **kwargs)
        return lambda func: make(func, given)

    # help() and inspect.signature() show the options' arguments and their documentation.
    functools.update_wrapper(factory, options, assigned=("__doc__",), updated=())
    factory.__name__ = factory.__qualname__ = name
    return factory


class JobDecorator(Protocol):
    """What ``@job(...)`` gives: called with a function ``fn(consumer, ...)``, the
    :class:`FunctionJob` of it, typed with that function's own parameters and result."""

    def __call__(self, func: Callable[Concatenate[Consumer, P], R], /) -> FunctionJob[P, R]: ...


def typed_job_decorator(
    options: Callable[OptionsP, JobOptions],
) -> Callable[OptionsP, JobDecorator]:
    """The ``job`` decorator factory: it takes the arguments of ``options`` (checked by type
    checkers and, as for any call, at run time) and gives a :class:`JobDecorator`."""

    def factory(*args: OptionsP.args, **kwargs: OptionsP.kwargs) -> JobDecorator:
        given = options(*args, **kwargs)

        def decorate(func: Callable[Concatenate[Consumer, P], R], /) -> FunctionJob[P, R]:
            return FunctionJob(func, given)

        return decorate

    functools.update_wrapper(factory, options, assigned=("__doc__",), updated=())
    factory.__name__ = factory.__qualname__ = "job"
    return factory


#: Decorator turning ``def fn(consumer, **kwargs)`` (or ``async def``) into a job:
#: ``@job(name=None, timeout=None, can_overlap=True, *, queue=None, priority=0, max_retries=0,
#: retry_on=(Exception,), backoff=DEFAULT_BACKOFF, time_limit=None, concurrency=None,
#: rate_limit=None, limit_key=None, unique_for=None, run_after_failure=False)``, the options
#: of :class:`JobOptions`. Gives a :class:`FunctionJob`; calling it still calls the function.
job = typed_job_decorator(JobOptions)


class JobRegistry:
    """The jobs a backend knows, by name (pulsar's ``JobRegistry``)."""

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._jobs: dict[str, Job] = {}
        for item in jobs:
            self.register(item)

    def register(self, item: Job) -> Job:
        """Add a job; raises :class:`ConfigurationError` when another job has its name."""
        existing = self._jobs.get(item.name)
        if existing is not None and existing is not item and type(existing) is not type(item):
            raise ConfigurationError(f"two jobs are named {item.name!r}: {existing!r} and {item!r}")
        self._jobs[item.name] = item
        return item

    @classmethod
    def load(cls, task_paths: Iterable[str]) -> JobRegistry:
        """Import each module path (``"myapp.jobs"``) and register the jobs it defines.

        A module's jobs are its :class:`Job` instances (such as ``@job`` functions) and the
        :class:`Job` subclasses defined in it that implement ``__call__``.
        Raises :class:`ConfigurationError` when a module cannot be imported.
        """
        registry = cls()
        for path in task_paths:
            try:
                module = importlib.import_module(path)
            except ImportError as exc:
                raise ConfigurationError(
                    f"cannot import task path {path!r}: {exc}. Check --task-paths and PYTHONPATH."
                ) from exc
            for item in _module_jobs(module):
                registry.register(item)
        return registry

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __getitem__(self, name: str) -> Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise TaskNotAvailable(name, list(self._jobs)) from None

    def get(self, name: str) -> Job | None:
        """The job called ``name``, or None."""
        return self._jobs.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._jobs))

    def __len__(self) -> int:
        return len(self._jobs)

    def jobs(self) -> list[Job]:
        """All jobs, sorted by name."""
        return [self._jobs[name] for name in self]

    def filter_types(self, type: str) -> list[tuple[str, Job]]:
        """``[(name, job), ...]`` of the jobs whose ``type`` is ``type`` (``"periodic"``), by
        name, as pulsar's ``JobRegistry.filter_types``."""
        return [(name, self._jobs[name]) for name in self if self._jobs[name].type == type]

    def regular(self) -> Iterator[tuple[str, Job]]:
        """``(name, job)`` of each regular (not periodic) job, by name: pulsar's
        ``JobRegistry.regular()``."""
        return iter(self.filter_types("regular"))

    def periodic(self) -> Iterator[tuple[str, Job]]:
        """``(name, job)`` of each periodic job, by name: pulsar's
        ``JobRegistry.periodic()``."""
        return iter(self.filter_types("periodic"))


def _module_jobs(module: Any) -> Iterator[Job]:
    for value in vars(module).values():
        if isinstance(value, Job):
            yield value
        elif (
            isinstance(value, type)
            and issubclass(value, Job)
            and value.__module__ == module.__name__
            and value.__call__ is not Job.__call__
            and not inspect.isabstract(value)
            and not value.__dict__.get("abstract", False)
        ):
            yield value()
