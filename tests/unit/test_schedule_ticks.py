"""Tick arithmetic of periodic jobs, with no database: anchors, cron, daylight saving (F16),
naive datetimes and invalid definitions."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import pgqueue
from pgqueue import ConfigurationError, JobRegistry
from pgqueue._periodic import CronSchedule, IntervalSchedule, PeriodicJob

BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def pulsar_scheduled_last_run_at(
    last_run_at: datetime, anchor: datetime, run_every: timedelta
) -> datetime:
    """``SchedulerEntry.scheduled_last_run_at`` of pulsar 0.9, written out as the seed shows it:
    the oracle the anchored interval schedule must agree with."""
    times = int(max((last_run_at - anchor).total_seconds(), 0) / run_every.total_seconds())
    if times:
        anchor += times * run_every
    while anchor <= last_run_at:
        anchor += run_every
    while anchor > last_run_at:
        anchor -= run_every
    return anchor


@pytest.mark.parametrize(
    "run_every",
    [timedelta(seconds=7), HOUR, timedelta(minutes=90), DAY, timedelta(seconds=0.25)],
)
def test_anchor_alignment_matches_pulsar_scheduled_last_run_at(run_every: timedelta) -> None:
    """Ticks fall on anchor + k * run_every; the last one at or before a moment is pulsar's
    scheduled_last_run_at, and the next one follows it by run_every (pulsar's is_due)."""
    rng = random.Random(4)
    anchor = datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    schedule = IntervalSchedule(run_every, anchor)
    span = run_every.total_seconds() * 2000  # the oracle walks back one tick at a time
    moments = [anchor + timedelta(seconds=rng.uniform(-span, span)) for _ in range(300)]
    moments += [anchor + k * run_every for k in (-3, -1, 0, 1, 2, 1000)]  # exactly on a tick
    for moment in moments:
        expected = pulsar_scheduled_last_run_at(moment, anchor, run_every)
        assert schedule.latest_at_or_before(moment) == expected
        assert schedule.next_after(moment) == expected + run_every
        assert schedule.next_after(moment) > moment


def test_interval_scan_counts_and_keeps_the_latest() -> None:
    schedule = IntervalSchedule(HOUR, datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    start = datetime(2026, 1, 1, 3, 5, tzinfo=UTC)
    end = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
    kept, total = schedule.scan(start, end, keep=2)
    assert total == 7  # 03:05 .. 09:05, both ends included
    assert kept == [datetime(2026, 1, 1, 8, 5, tzinfo=UTC), datetime(2026, 1, 1, 9, 5, tzinfo=UTC)]
    assert schedule.scan(end, start, keep=5) == ([], 0)


@pytest.mark.parametrize("run_every", [HOUR, DAY])
@pytest.mark.parametrize(
    "night", [datetime(2026, 3, 29, tzinfo=BERLIN), datetime(2026, 10, 25, tzinfo=BERLIN)]
)
def test_interval_ticks_across_berlin_dst_one_per_elapsed_run_every_F16(
    run_every: timedelta, night: datetime
) -> None:
    """F16: anchor in Europe/Berlin, run_every 1 h and 24 h across the March and October
    switches: exactly one tick per run_every of elapsed time, none skipped or doubled."""
    schedule = IntervalSchedule(run_every, datetime(2026, 1, 1, 9, 0, tzinfo=BERLIN))
    start, end = night - 3 * DAY, night + 3 * DAY
    ticks, total = schedule.scan(start, end, keep=10_000)
    assert total == len(ticks) == len(set(ticks))
    elapsed = (end.astimezone(UTC) - start.astimezone(UTC)) // run_every
    assert total in (elapsed, elapsed + 1)
    assert all(b - a == run_every for a, b in itertools.pairwise(ticks))
    if run_every == DAY:
        # Absolute time: 09:00 winter time is 10:00 summer time (documented).
        local = [t.astimezone(BERLIN).strftime("%H:%M") for t in ticks]
        assert set(local) == {"09:00", "10:00"}


def test_hourly_cron_runs_once_per_elapsed_hour_across_dst_F16() -> None:
    schedule = CronSchedule("0 * * * *", "Europe/Berlin")
    for night in (datetime(2026, 3, 29, tzinfo=BERLIN), datetime(2026, 10, 25, tzinfo=BERLIN)):
        start, end = night, night + timedelta(hours=8)
        ticks, total = schedule.scan(start, end, keep=100)
        elapsed_hours = (end.astimezone(UTC) - start.astimezone(UTC)) // HOUR
        assert total == len(ticks) == elapsed_hours + 1
        assert all(b - a == HOUR for a, b in itertools.pairwise(ticks))


def test_daily_cron_runs_once_per_calendar_day_across_dst_F16() -> None:
    """02:30 does not exist on 29 March (runs once, at 03:00 CEST) and happens twice on
    25 October (runs once, at the first 02:30)."""
    schedule = CronSchedule("30 2 * * *", "Europe/Berlin")
    for month, day in ((3, 29), (10, 25)):
        start = datetime(2026, month, day - 3, 12, tzinfo=BERLIN)
        ticks, total = schedule.scan(start, start + 6 * DAY, keep=100)
        assert total == 6
        days = [t.astimezone(BERLIN).date() for t in ticks]
        assert len(set(days)) == 6
        switch = [t.astimezone(BERLIN) for t in ticks if t.astimezone(BERLIN).day == day]
        assert len(switch) == 1
        expected = "03:00" if month == 3 else "02:30"
        assert switch[0].strftime("%H:%M") == expected
    autumn = CronSchedule("30 2 * * *", "Europe/Berlin")
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert autumn.next_after(first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


def test_cron_next_after_is_strictly_later_and_in_utc() -> None:
    schedule = CronSchedule("*/15 * * * *", "UTC")
    moment = datetime(2026, 5, 5, 10, 15, tzinfo=UTC)
    assert schedule.next_after(moment) == datetime(2026, 5, 5, 10, 30, tzinfo=UTC)
    assert schedule.next_after(moment).utcoffset() == timedelta(0)


def test_naive_anchor_is_refused_without_a_timezone_F16() -> None:
    with pytest.raises(ConfigurationError, match="naive"):
        pgqueue.periodic_job(run_every=60, anchor=datetime(2026, 1, 1, 9))(lambda consumer: None)


def test_naive_anchor_is_read_in_the_jobs_timezone_F16() -> None:
    """Documented: a naive anchor is wall-clock time in ``timezone``; an ambiguous one (fall
    back) is its first occurrence and a missing one (spring forward) takes the offset before
    the gap, as zoneinfo reads ``fold=0``."""

    def anchor_of(naive: datetime) -> datetime | None:
        job = pgqueue.periodic_job(run_every=DAY, anchor=naive, timezone="Europe/Berlin")(
            lambda consumer: None
        )
        return job.definition().anchor

    assert anchor_of(datetime(2026, 1, 1, 9)) == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert anchor_of(datetime(2026, 7, 1, 9)) == datetime(2026, 7, 1, 7, tzinfo=UTC)
    assert anchor_of(datetime(2026, 10, 25, 2, 30)) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert anchor_of(datetime(2026, 3, 29, 2, 30)) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of run_every and cron"),
        ({"run_every": 60, "cron": "* * * * *", "timezone": "UTC"}, "exactly one"),
        ({"run_every": 0}, "more than 0"),
        ({"run_every": -5}, "run_every"),
        ({"cron": "0 3 * * *"}, "explicit timezone"),
        ({"cron": "0 99 * * *", "timezone": "UTC"}, "invalid cron expression"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "0 3 * * *", "timezone": "UTC", "anchor": datetime.now(UTC)}, "anchor"),
        ({"run_every": 60, "missed": "sometimes"}, "missed must be one of"),
        ({"run_every": 60, "backfill_limit": 0}, "backfill_limit"),
    ],
)
def test_invalid_schedules_are_refused_when_defined(options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        pgqueue.periodic_job(**options)(lambda consumer: None)


def test_class_form_and_decorator_form_are_periodic_in_the_registry() -> None:
    class Cleanup(PeriodicJob):
        """Clean up."""

        run_every = timedelta(minutes=5)

        def __call__(self, consumer: pgqueue.TaskConsumer) -> None:
            return None

    @pgqueue.periodic_job(cron="0 3 * * *", timezone="UTC", can_overlap=False)
    def nightly(consumer: pgqueue.TaskConsumer) -> None:
        """Nightly."""

    @pgqueue.job()
    def plain(consumer: pgqueue.TaskConsumer) -> None:
        """Not periodic."""

    registry = JobRegistry([Cleanup(), nightly, plain])
    assert [name for name, _ in registry.filter_types("periodic")] == ["cleanup", "nightly"]
    assert [name for name, _ in registry.filter_types("regular")] == ["plain"]
    assert nightly.overlaps({}) is False
    assert nightly.definition().cron == "0 3 * * *"
    assert Cleanup().definition().run_every == timedelta(minutes=5)


def test_a_bad_class_definition_fails_when_its_module_is_loaded() -> None:
    class Broken(PeriodicJob):
        cron = "0 3 * * *"  # no timezone

        def __call__(self, consumer: pgqueue.TaskConsumer) -> None:
            return None

    with pytest.raises(ConfigurationError, match="broken"):
        Broken()
