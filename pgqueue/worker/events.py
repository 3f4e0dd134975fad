"""What a worker's services report to whoever listens (the metrics, for one).

The claimer reports every claim and the completer every committed write to one
:class:`WorkerEvents`; a subscriber (:class:`Subscriber`) registers with
:meth:`WorkerEvents.subscribe` and hears of them on the service's thread, so it must return
quickly. Nothing here knows who subscribes: the worker package imports no metrics code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from .._task import Task
from .outcome import Outcome


class Subscriber(Protocol):
    """Told of claims and of written outcomes."""

    def claimed(self, tasks: list[Task]) -> None:
        """One claim returned ``tasks`` (those revoked as expired have status REVOKED)."""

    def finished(self, outcomes: list[Outcome], written: Mapping[str, datetime | None]) -> None:
        """A batch of ``outcomes`` was written; ``written`` maps the ids of the rows changed
        to their ``time_ended`` (an outcome missing from it was fenced off)."""


class WorkerEvents:
    """The fan-out of a worker's events to its subscribers (none by default)."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Tell ``subscriber`` of every later claim and write (register before :meth:`run`)."""
        self._subscribers.append(subscriber)

    def claimed(self, tasks: list[Task]) -> None:
        """Report a claim to every subscriber."""
        for subscriber in self._subscribers:
            subscriber.claimed(tasks)

    def finished(self, outcomes: list[Outcome], written: Mapping[str, datetime | None]) -> None:
        """Report a written batch to every subscriber."""
        for subscriber in self._subscribers:
            subscriber.finished(outcomes, written)
