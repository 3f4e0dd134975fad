"""States, the job registry and the task row, with no database."""

from __future__ import annotations

from dataclasses import fields

import pytest

import pgqueue
from pgqueue import states
from pgqueue._errors import TaskNotAvailable
from pgqueue._task import TASK_COLUMNS


def test_states_keep_pulsar_numbers() -> None:
    assert (states.QUEUED, states.STARTED, states.RETRY) == (6, 5, 4)
    assert (states.REVOKED, states.FAILURE, states.SUCCESS) == (3, 2, 1)
    assert states.READY_STATES == {3, 2, 1}
    assert states.FULL_RUN_STATES == {2, 1}
    assert states.status_string(4) == "RETRY"
    assert states.status_string(99) == "UNKNOWN"


def test_job_registry_names_and_kinds() -> None:
    registry = pgqueue.JobRegistry.load(["tests.support.jobs"])
    assert {"add", "async_add", "fail", "per_key", "exclusive"} <= set(registry)
    assert registry["async_add"].is_async and not registry["add"].is_async
    assert registry["fail"].name == "fail"  # class name lower-cased
    assert registry["add"].doc == "Add two numbers."
    with pytest.raises(TaskNotAvailable, match="nope"):
        registry["nope"]


def test_task_fields_are_the_selected_columns() -> None:
    """Task.from_row reads TASK_COLUMNS: the two must name the same fields, in order."""
    assert tuple(f.name for f in fields(pgqueue.Task)) == TASK_COLUMNS
