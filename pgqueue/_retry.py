"""Retries: the :class:`Retry` request a job can raise, backoff policies, and the rule that
turns a failed attempt into RETRY or FAILURE.

A task may run ``1 + max_retries`` times. An attempt ends in RETRY (claimable again at
``now() + backoff(attempt)`` on the database clock) when

* the job raised an exception that is an instance of one of the job's ``retry_on`` types
  (default ``(Exception,)``), or raised :class:`Retry` itself, or ran past its ``time_limit``,
* and attempts remain (``attempts <= max_retries``).

Otherwise it ends in FAILURE with the error kept on the row. A worker lost mid-task counts as
an attempt too (see :mod:`pgqueue._rescuer`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol


class Backoff(Protocol):
    """``backoff(attempt) -> seconds``: the wait before the next attempt after attempt number
    ``attempt`` (1 for the first run) failed."""

    def __call__(self, attempt: int, /) -> float: ...


class Retry(Exception):
    """Raise from a job to ask for another attempt.

    :param reason: kept as the task's ``error`` while it waits.
    :param countdown: seconds to wait before the next attempt; None uses the job's ``backoff``.

    When no attempts remain (``attempts > max_retries``) the task ends FAILURE with the reason.
    """

    def __init__(self, reason: str = "retry requested", *, countdown: float | None = None):
        if countdown is not None and countdown < 0:
            raise ValueError("countdown must be seconds >= 0")
        super().__init__(reason)
        self.reason = reason
        self.countdown = countdown


class TimeLimitExceeded(Exception):
    """A job ran longer than its ``time_limit``; raised by ``consumer.check()`` (cooperative,
    thread jobs) and by the worker for cancelled ``async`` jobs."""


class Revoked(Exception):
    """The task was revoked while it ran (``backend.revoke``); raised by ``consumer.check()``
    and, as cancellation, in ``async`` jobs. The task ends REVOKED."""


@dataclass(frozen=True)
class ExponentialBackoff:
    """``min(cap, base * factor ** (attempt - 1))`` seconds, less up to ``jitter`` of it.

    The exponent stops growing at :attr:`max_exponent`, where the delay reaches ``cap``: the
    cap applies before the power is computed, so no attempt number overflows (F24).

    :param base: seconds after the first failed attempt (default 1).
    :param factor: growth per attempt (default 2).
    :param cap: the longest wait in seconds (default 600).
    :param jitter: the fraction (0..1) of each wait taken off at random, so tasks that failed
        together do not all come back at the same moment (default 0.5).
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        finite = all(map(math.isfinite, (self.base, self.factor, self.cap)))
        in_range = self.base >= 0 and self.cap >= 0 and self.factor >= 1
        if not (finite and in_range and 0 <= self.jitter <= 1):  # NaN fails every comparison
            raise ValueError("need finite base >= 0, cap >= 0, factor >= 1 and 0 <= jitter <= 1")

    @property
    def max_exponent(self) -> int:
        """The smallest exponent at which ``base * factor ** exponent`` reaches ``cap`` (0
        when it never grows: ``base`` 0, ``factor`` 1, or ``base >= cap``). The rescue
        statement caps its exponent with it too (:data:`pgqueue._sql.RESCUE_LOST_TASKS`)."""
        if self.base <= 0 or self.factor == 1 or self.base >= self.cap:
            return 0
        return math.ceil(math.log(self.cap / self.base, self.factor))

    def __call__(self, attempt: int) -> float:
        exponent = min(max(attempt - 1, 0), self.max_exponent)
        delay = min(self.cap, self.base * self.factor**exponent)
        return delay * (1 - self.jitter * random.random())


#: The backoff of jobs that set none, and of tasks rescued from lost workers.
DEFAULT_BACKOFF = ExponentialBackoff()


@dataclass(frozen=True)
class RetryDecision:
    """What a failed attempt becomes: ``delay`` seconds before the next attempt, or None for
    FAILURE; ``error`` is the text stored on the row."""

    delay: float | None
    error: str


def decide(
    exc: BaseException,
    *,
    attempt: int,
    max_retries: int,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff,
) -> RetryDecision:
    """Apply the retry rule above to an attempt that raised ``exc``."""
    error = f"{type(exc).__name__}: {exc}"
    wanted = isinstance(exc, (Retry, TimeLimitExceeded, *retry_on))
    if not wanted:
        return RetryDecision(None, error)
    if attempt > max_retries:
        if max_retries:
            error += f" (gave up after {attempt} attempts: max_retries={max_retries})"
        return RetryDecision(None, error)
    countdown = exc.countdown if isinstance(exc, Retry) else None
    return RetryDecision(backoff(attempt) if countdown is None else countdown, error)
