"""Job options are declared once (JobOptions, ScheduleOptions): a Job subclass's class
attributes, @job and @periodic_job all read the same list, with the same defaults."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import pytest

import pgqueue
from pgqueue._errors import ConfigurationError
from pgqueue._jobs import FunctionJob, JobOptions
from pgqueue._periodic import FunctionPeriodicJob, ScheduleOptions
from pgqueue._retry import DEFAULT_BACKOFF


def noop(consumer: pgqueue.TaskConsumer) -> None:
    """Does nothing."""


class Plain(pgqueue.Job):
    def __call__(self, consumer: pgqueue.TaskConsumer) -> None:
        pass


class Tuned(pgqueue.Job):
    timeout = 3600
    queue = "slow"
    max_retries = 2

    def __call__(self, consumer: pgqueue.TaskConsumer) -> None:
        pass


def test_a_job_class_has_every_option_with_its_default() -> None:
    job = Plain()
    assert job.name == "plain"
    for field in fields(JobOptions):
        if field.name != "name":
            assert getattr(job, field.name) == field.default, field.name
    assert (job.priority, job.retry_on, job.backoff) == (0, (Exception,), DEFAULT_BACKOFF)


def test_class_attributes_override_the_defaults_per_class() -> None:
    tuned, plain = Tuned(), Plain()
    assert (tuned.timeout, tuned.queue, tuned.max_retries) == (3600, "slow", 2)
    assert (plain.timeout, plain.queue, plain.max_retries) == (None, None, 0)
    assert tuned.expiry_seconds() == 3600.0


def test_the_job_decorator_takes_the_options_positionally_and_by_keyword() -> None:
    job = pgqueue.job("renamed", 30, False, priority=5, time_limit=timedelta(seconds=2))(noop)
    assert isinstance(job, FunctionJob)
    assert (job.name, job.timeout, job.can_overlap) == ("renamed", 30, False)
    assert (job.priority, job.time_limit_seconds(), job.queue) == (5, 2.0, None)
    assert job.doc == "Does nothing." and job.run_function is noop
    assert pgqueue.job()(noop).name == "noop"
    with pytest.raises(TypeError, match="nope"):
        pgqueue.job(nope=1)  # type: ignore[call-arg]


def test_two_decorated_jobs_share_no_option() -> None:
    first = pgqueue.job(queue="a")(noop)
    second = pgqueue.job()(noop)
    assert (first.queue, second.queue, pgqueue.Job.queue) == ("a", None, None)


def test_periodic_job_takes_run_every_first_then_schedule_and_job_options() -> None:
    job = pgqueue.periodic_job(60, missed="all", backfill_limit=5, name="tick", priority=3)(noop)
    assert isinstance(job, FunctionPeriodicJob) and isinstance(job, pgqueue.PeriodicJob)
    assert (job.name, job.priority, job.type) == ("tick", 3, "periodic")
    definition = job.definition()
    assert definition.run_every == timedelta(seconds=60)
    assert (definition.missed, definition.backfill_limit) == ("all", 5)
    defaults = pgqueue.periodic_job(run_every=60)(noop)
    for field in fields(ScheduleOptions):
        if field.name != "run_every":
            assert getattr(defaults, field.name) == field.default, field.name


def test_periodic_job_errors_are_unchanged() -> None:
    with pytest.raises(ConfigurationError, match="exactly one of run_every and cron"):
        pgqueue.periodic_job()(noop)
    with pytest.raises(ConfigurationError, match="explicit timezone"):
        pgqueue.periodic_job(cron="0 3 * * *")(noop)
    with pytest.raises(TypeError, match="nope"):
        pgqueue.periodic_job(run_every=1, nope=1)  # type: ignore[call-arg]
