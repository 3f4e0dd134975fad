"""Periodic jobs and their tick arithmetic (pulsar's ``PeriodicJob`` and ``SchedulerEntry``).

A periodic job is a :class:`~pgqueue.Job` that a scheduler queues by itself at every *tick*::

    class Report(pgqueue.PeriodicJob):
        run_every = timedelta(hours=1)
        anchor = datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc)   # ticks at hh:05 UTC

        def __call__(self, consumer): ...

    @pgqueue.periodic_job(cron="30 9 * * mon-fri", timezone="Europe/Berlin")
    def standup(consumer): ...

Two kinds of schedule:

* **interval** (``run_every``): ticks fall on ``anchor + k * run_every`` for every integer k,
  in absolute time (UTC arithmetic), so a daylight-saving switch neither skips nor doubles a
  run: a 24 h job anchored at 09:00 Berlin winter time runs at 10:00 Berlin summer time.
  Without an anchor, ticks are aligned to when the schedule was first stored in the database.
* **cron** (``cron`` + ``timezone``): the expression is read as wall-clock time in that zone
  (croniter). A wall-clock time that does not exist (spring forward) runs once at the first
  instant after the gap; a wall-clock time that occurs twice (fall back) runs once, at its first
  occurrence, unless the expression runs every hour (hour field ``*``), in which case it runs
  at both, once per elapsed hour.

Naive anchors: read in the job's ``timezone`` when one is given, as :mod:`zoneinfo` reads
``fold=0`` (a time that occurs twice is its first occurrence; a time that does not exist takes
the offset before the gap), else refused with :class:`~pgqueue._errors.ConfigurationError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._errors import ConfigurationError
from ._jobs import FunctionJob, Job, JobOptions, copy_options, decorator_of, to_seconds

if TYPE_CHECKING:  # croniter loads with the first cron schedule (~9 ms of every start-up)
    from croniter import croniter

MissedPolicy = Literal["skip", "once", "all"]
#: What a scheduler does with ticks that passed while no scheduler ran.
MISSED_POLICIES: tuple[MissedPolicy, ...] = ("skip", "once", "all")


class Schedule(ABC):
    """When a periodic job's ticks fall. Every datetime in and out is timezone-aware."""

    @abstractmethod
    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (in UTC)."""

    @abstractmethod
    def scan(self, start: datetime, end: datetime, keep: int) -> tuple[list[datetime], int]:
        """The ticks ``t`` with ``start <= t <= end``: ``(the latest keep of them, oldest
        first; how many there are in all)``."""

    @abstractmethod
    def describe(self) -> str:
        """The schedule in words, e.g. ``every 1:00:00 from 2026-01-01T00:05:00+00:00``."""


@dataclass(frozen=True)
class IntervalSchedule(Schedule):
    """Ticks at ``anchor + k * run_every`` for every integer ``k`` (absolute time).

    The anchor is kept in UTC: Python adds a timedelta to an aware datetime on its wall
    clock, which across a daylight-saving switch would double or skip a tick.
    """

    run_every: timedelta
    anchor: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchor", self.anchor.astimezone(UTC))

    def _index_at_or_before(self, moment: datetime) -> int:
        return (moment.astimezone(UTC) - self.anchor) // self.run_every

    def tick(self, index: int) -> datetime:
        """Tick number ``index`` (0 is the anchor), in UTC."""
        return self.anchor + index * self.run_every

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before ``moment``: pulsar's ``scheduled_last_run_at``."""
        return self.tick(self._index_at_or_before(moment))

    def next_after(self, moment: datetime) -> datetime:
        return self.tick(self._index_at_or_before(moment) + 1)

    def scan(self, start: datetime, end: datetime, keep: int) -> tuple[list[datetime], int]:
        first = -((self.anchor - start.astimezone(UTC)) // self.run_every)  # ceil(.../every)
        last = self._index_at_or_before(end)
        total = max(last - first + 1, 0)
        return [self.tick(k) for k in range(max(first, last - keep + 1), last + 1)], total

    def describe(self) -> str:
        return f"every {self.run_every} from {self.anchor.isoformat()}"


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """Ticks where the cron ``expression`` matches the wall clock of ``timezone``."""

    expression: str
    timezone: str

    def __post_init__(self) -> None:
        from croniter import croniter

        if not croniter.is_valid(self.expression):
            raise ConfigurationError(
                f"invalid cron expression {self.expression!r}; expected five fields "
                "(minute hour day month weekday), e.g. '30 9 * * mon-fri'"
            )
        zone_of(self.timezone)

    @property
    def _zone(self) -> ZoneInfo:
        return zone_of(self.timezone)

    @property
    def _every_hour(self) -> bool:
        from croniter import croniter

        return bool(croniter(self.expression).expanded[1] == ["*"])

    def _repeated(self, moment: datetime) -> bool:
        """True for the second occurrence of an ambiguous wall-clock time (fall back), which
        runs only when the expression runs every hour."""
        local = moment.astimezone(self._zone)
        return (
            local.fold == 1
            and local.utcoffset() != local.replace(fold=0).utcoffset()
            and not self._every_hour
        )

    def _forward(self, moment: datetime) -> croniter:
        from croniter import croniter

        return croniter(self.expression, moment.astimezone(self._zone))

    def _next(self, it: croniter, after: datetime) -> datetime:
        while True:
            found = cast(datetime, it.get_next(datetime)).astimezone(UTC)
            if found > after and not self._repeated(found):
                return found

    def next_after(self, moment: datetime) -> datetime:
        return self._next(self._forward(moment), moment)

    def scan(self, start: datetime, end: datetime, keep: int) -> tuple[list[datetime], int]:
        before = start.astimezone(UTC) - timedelta(microseconds=1)
        it = self._forward(before)
        latest: deque[datetime] = deque(maxlen=max(keep, 0))
        total = 0
        found = self._next(it, before)
        end = end.astimezone(UTC)
        while found <= end:
            latest.append(found)
            total += 1
            found = self._next(it, found)
        return list(latest), total

    def describe(self) -> str:
        return f"cron {self.expression} {self.timezone}"


def zone_of(name: str) -> ZoneInfo:
    """The :class:`ZoneInfo` called ``name``; :class:`ConfigurationError` if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


@dataclass(frozen=True)
class ScheduleDefinition:
    """A periodic job's schedule as stored in the ``schedule`` table (one row per job).

    ``anchor`` is None for an interval job without one: the scheduler then stores the
    database time at which the schedule is first defined.
    """

    run_every: timedelta | None
    anchor: datetime | None
    cron: str | None
    timezone: str | None
    missed: MissedPolicy
    backfill_limit: int
    misfire_grace: timedelta

    def schedule(self, stored_anchor: datetime | None = None) -> Schedule:
        """The :class:`Schedule`; ``stored_anchor`` stands in for a missing anchor."""
        if self.cron is not None:
            return CronSchedule(self.cron, self.timezone or "UTC")
        anchor = self.anchor or stored_anchor
        assert self.run_every is not None and anchor is not None
        return IntervalSchedule(self.run_every, anchor)

    def same_timing(self, other: ScheduleDefinition) -> bool:
        """True when both put ticks at the same times (a missing anchor matches any)."""
        return (
            self.run_every == other.run_every
            and self.cron == other.cron
            and (self.cron is None or self.timezone == other.timezone)
            and (self.anchor is None or other.anchor is None or self.anchor == other.anchor)
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScheduleDefinition:
        """Read the definition columns of a ``schedule`` row."""
        return cls(
            row["run_every"],
            row["anchor"],
            row["cron"],
            row["timezone"],
            row["missed"],
            row["backfill_limit"],
            row["misfire_grace"],
        )


@dataclass(frozen=True)
class TickPlan:
    """What a scheduler does about one job's due ticks (see :func:`plan_ticks`).

    * ``run``: the ticks to queue a task for, oldest first.
    * ``skipped``: due ticks not run because of the missed-run policy.
    * ``last_tick``: the latest due tick (now handled); None when no tick was due.
    * ``next_tick``: the first tick after ``now``.
    """

    run: list[datetime]
    skipped: int
    last_tick: datetime | None
    next_tick: datetime


def plan_ticks(
    schedule: Schedule, policy: ScheduleDefinition, next_tick: datetime, now: datetime
) -> TickPlan:
    """Decide which due ticks (``next_tick <= t <= now``) to run, by the missed-run policy.

    * ``skip``: run the latest due tick only if it is at most ``misfire_grace`` old; the
      others were missed and are skipped.
    * ``once``: run the latest due tick; older due ticks are skipped (one catch-up run).
    * ``all``: run every due tick, at most the ``backfill_limit`` most recent; the older
      ones are skipped.

    ``now`` is the database's clock (or a test's), never the host's.
    """
    keep = policy.backfill_limit if policy.missed == "all" else 1
    due, total = schedule.scan(next_tick, now, keep)
    following = schedule.next_after(now)
    if not due:
        return TickPlan([], 0, None, following)
    latest = due[-1]
    if policy.missed == "skip" and now - latest > policy.misfire_grace:
        run: list[datetime] = []
    elif policy.missed == "all":
        run = due
    else:
        run = [latest]
    return TickPlan(run, total - len(run), latest, following)


@dataclass(eq=False, repr=False)
class ScheduleOptions:
    """The schedule options of a periodic job, declared once: class attributes of every
    :class:`PeriodicJob`, and arguments of :func:`periodic_job`.

    * ``run_every`` (seconds or timedelta): the interval between ticks; or
    * ``cron`` (str) with ``timezone`` (IANA name): a cron expression on that zone's clock.
    * ``anchor`` (aware datetime, interval only): ticks fall on ``anchor + k * run_every``.
      A naive anchor is read in ``timezone`` if given, else refused.
    * ``missed`` (``"skip"``, ``"once"`` or ``"all"``; default ``"once"``): what happens to
      ticks that passed while no scheduler ran (see :func:`plan_ticks`).
    * ``backfill_limit`` (int, default 100): ``missed="all"`` queues at most this many.
    * ``misfire_grace`` (seconds or timedelta, default 60): with ``missed="skip"``, a tick
      found later than this is skipped.

    They are checked when the job is made (:meth:`PeriodicJob.definition`).
    """

    run_every: float | timedelta | None = None
    _: KW_ONLY
    anchor: datetime | None = None
    cron: str | None = None
    timezone: str | None = None
    missed: MissedPolicy = "once"
    backfill_limit: int = 100
    misfire_grace: float | timedelta = 60.0


@dataclass(eq=False, repr=False)
class PeriodicJobOptions(JobOptions, ScheduleOptions):
    """What :func:`periodic_job` takes: ``run_every`` first, the job's options
    (:class:`~pgqueue._jobs.JobOptions`) and the schedule's (:class:`ScheduleOptions`)."""


class PeriodicJob(Job, ScheduleOptions):
    """A job queued by the scheduler at every tick (pulsar's ``PeriodicJob``).

    Class attributes: those of :class:`~pgqueue.Job`, and the schedule's, listed and
    explained at :class:`ScheduleOptions`.

    The job is called without keyword arguments; ``consumer.task.meta_params["tick"]`` holds
    the tick (ISO 8601, UTC) the task was queued for. With ``can_overlap = False`` a tick that
    finds the previous task still live (QUEUED, STARTED or RETRY) is skipped and logged.
    Raises :class:`~pgqueue._errors.ConfigurationError` on creation when the schedule is
    invalid.
    """

    type: ClassVar[str] = "periodic"

    def __init__(self) -> None:
        self.definition()

    def definition(self) -> ScheduleDefinition:
        """The validated :class:`ScheduleDefinition` of this job."""
        where = f"periodic job {self.name!r}"
        if (self.run_every is None) == (self.cron is None):
            raise ConfigurationError(f"{where} needs exactly one of run_every and cron")
        if self.timezone is not None:
            zone_of(self.timezone)
        if self.missed not in MISSED_POLICIES:
            raise ConfigurationError(
                f"{where}: missed must be one of {', '.join(MISSED_POLICIES)}, not {self.missed!r}"
            )
        if (
            isinstance(self.backfill_limit, bool)
            or not isinstance(self.backfill_limit, int)
            or self.backfill_limit < 1
        ):
            raise ConfigurationError(f"{where}: backfill_limit must be an integer >= 1")
        grace = timedelta(seconds=to_seconds(self.misfire_grace, f"{where} misfire_grace") or 0)
        if self.cron is not None:
            if self.anchor is not None:
                raise ConfigurationError(f"{where}: anchor applies to run_every, not to cron")
            if self.timezone is None:
                raise ConfigurationError(
                    f"{where}: a cron schedule needs an explicit timezone, e.g. timezone='UTC'"
                )
            CronSchedule(self.cron, self.timezone)
            return ScheduleDefinition(
                None, None, self.cron, self.timezone, self.missed, self.backfill_limit, grace
            )
        seconds = to_seconds(self.run_every, f"{where} run_every")
        if not seconds:
            raise ConfigurationError(f"{where}: run_every must be more than 0 seconds")
        return ScheduleDefinition(
            timedelta(seconds=seconds),
            self._aware_anchor(where),
            None,
            self.timezone,
            self.missed,
            self.backfill_limit,
            grace,
        )

    def _aware_anchor(self, where: str) -> datetime | None:
        anchor = self.anchor
        if anchor is None:
            return None
        if not isinstance(anchor, datetime):
            raise ConfigurationError(f"{where}: anchor must be a datetime, not {anchor!r}")
        if anchor.tzinfo is None or anchor.utcoffset() is None:
            if self.timezone is None:
                raise ConfigurationError(
                    f"{where}: anchor {anchor.isoformat()} is naive; give it a tzinfo or set "
                    "timezone='Europe/Berlin' (say) to read it in that zone"
                )
            anchor = anchor.replace(tzinfo=zone_of(self.timezone))
        return anchor.astimezone(UTC)


class FunctionPeriodicJob(FunctionJob[..., Any], PeriodicJob):
    """A periodic job made from a plain function by :func:`periodic_job`."""

    def __init__(self, func: Callable[..., Any], options: PeriodicJobOptions) -> None:
        FunctionJob.__init__(self, func, options)
        copy_options(self, options, ScheduleOptions)
        PeriodicJob.__init__(self)


#: Decorator turning ``def fn(consumer)`` (or ``async def``) into a periodic job:
#: ``@periodic_job(run_every=None, *, anchor=None, cron=None, timezone=None, missed="once",
#: backfill_limit=100, misfire_grace=60.0, **options)``. The schedule arguments mean what the
#: :class:`ScheduleOptions` of the same names mean; ``options`` are those of
#: :func:`pgqueue.job` (``name``, ``timeout``, ``can_overlap``, ``queue``, ``priority``,
#: ``max_retries``, ...). Raises :class:`~pgqueue._errors.ConfigurationError` at decoration
#: time when the schedule is invalid.
periodic_job = decorator_of(PeriodicJobOptions, FunctionPeriodicJob, "periodic_job")
