"""The scheduler against a real database, driven by a controlled clock: each call passes the
``now`` the database would report, so hours of schedule pass in milliseconds.

Covers exactly-once ticks with three schedulers (F15), pruning (F15), missed-run policies,
overlap skipping (F13), daylight saving through the table (F16), redefinition, inspection.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import pgqueue
from pgqueue import JobRegistry, TaskBackend, states
from pgqueue._periodic import FunctionPeriodicJob
from pgqueue._scheduler import Scheduler
from tests.support.fixtures import run_cli, sql

HOUR = timedelta(hours=1)
ANCHOR = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)  # ticks at five past every hour
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FIRST = datetime(2026, 6, 1, 12, 5, tzinfo=UTC)


def noop(consumer: pgqueue.TaskConsumer) -> None:
    """Does nothing; the tests look at the tasks queued, not at runs."""


def hourly(name: str = "hourly", **options: Any) -> FunctionPeriodicJob:
    options.setdefault("anchor", ANCHOR)
    return pgqueue.periodic_job(run_every=HOUR, name=name, **options)(noop)


MakeScheduler = Callable[..., Scheduler]


@pytest.fixture
def make_scheduler(dsn: str) -> Iterator[MakeScheduler]:
    """``make_scheduler(*jobs)``: a Scheduler for these jobs on the test database."""
    made: list[Scheduler] = []

    def make(*jobs: pgqueue.Job) -> Scheduler:
        scheduler = Scheduler(dsn, JobRegistry(jobs))
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.close()


def queued_ticks(dsn: str, name: str = "hourly") -> list[datetime]:
    """The tick of every task of job ``name``, in order (duplicates kept)."""
    rows = sql(
        dsn,
        "SELECT (meta_params->>'tick')::timestamptz AS tick FROM pgqueue.task "
        "WHERE name = %s ORDER BY 1",
        (name,),
    )
    return [row["tick"] for row in rows]


def schedule_row(dsn: str, name: str = "hourly") -> dict[str, Any]:
    return sql(dsn, "SELECT * FROM pgqueue.schedule WHERE name = %s", (name,))[0]


def test_schedule_is_readable_in_sql_with_every_column_commented(
    dsn: str, make_scheduler: MakeScheduler
) -> None:
    make_scheduler(hourly()).define(now=T0)
    row = sql(dsn, "SELECT * FROM pgqueue.schedule_state")[0]
    assert row["name"] == "hourly"
    assert row["schedule"] == "every 01:00:00"
    assert row["next_tick"] == FIRST and row["last_tick"] is None
    assert row["missed"] == "once" and row["runs_count"] == 0
    undocumented = sql(
        dsn,
        """
        SELECT c.relname, a.attname FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'pgqueue' AND c.relname IN ('schedule', 'schedule_state')
          AND a.attnum > 0 AND NOT a.attisdropped
          AND col_description(c.oid, a.attnum) IS NULL
        """,
    )
    assert undocumented == []


def test_each_tick_is_queued_once_at_its_time(dsn: str, make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(hourly())
    scheduler.define(now=T0)
    assert scheduler.tick(now=T0) == []
    assert scheduler.tick(now=FIRST - timedelta(microseconds=1)) == []
    [result] = scheduler.tick(now=FIRST)
    assert [tick for tick, _ in result.queued] == [FIRST]
    assert result.next_tick == FIRST + HOUR
    assert scheduler.tick(now=FIRST + timedelta(minutes=30)) == []
    scheduler.tick(now=FIRST + HOUR + timedelta(seconds=0.5))
    assert queued_ticks(dsn) == [FIRST, FIRST + HOUR]
    row = schedule_row(dsn)
    assert row["runs_count"] == 2 and row["skipped_count"] == 0
    assert row["last_tick"] == FIRST + HOUR and row["last_outcome"] == "queued"
    task = sql(dsn, "SELECT id::text AS id, status, kwargs FROM pgqueue.task ORDER BY run_at DESC")
    assert str(row["last_task"]) == task[0]["id"]
    assert task[0]["status"] == states.QUEUED and task[0]["kwargs"] == {}
    assert scheduler.seconds_to_next_tick(now=FIRST + HOUR) == 3600.0


@pytest.mark.parametrize(
    ("missed", "queued", "skipped"),
    [
        ("skip", [], 10),
        ("once", [FIRST + 9 * HOUR], 9),
        ("all", [FIRST + k * HOUR for k in range(6, 10)], 6),
    ],
)
@pytest.mark.slow
def test_restart_after_downtime_follows_the_missed_run_policy(
    dsn: str,
    make_scheduler: MakeScheduler,
    missed: str,
    queued: list[datetime],
    skipped: int,
) -> None:
    """Ten ticks (12:05 .. 21:05) pass while no scheduler runs; the next one to start finds
    them at 21:35: skip runs none, once runs the latest, all runs the latest backfill_limit."""
    job = hourly(missed=missed, backfill_limit=4)
    make_scheduler(job).define(now=T0)
    restarted = make_scheduler(job)
    restarted.tick(now=T0 + timedelta(hours=9, minutes=35))
    assert queued_ticks(dsn) == queued
    row = schedule_row(dsn)
    assert row["skipped_count"] == skipped and row["runs_count"] == len(queued)
    assert row["last_tick"] == FIRST + 9 * HOUR and row["next_tick"] == FIRST + 10 * HOUR
    assert row["last_outcome"] == ("skipped (missed)" if missed == "skip" else "queued")
    # After the catch-up, ticks are on time again under every policy.
    restarted.tick(now=FIRST + 10 * HOUR + timedelta(seconds=1))
    assert queued_ticks(dsn) == [*queued, FIRST + 10 * HOUR]


def test_skip_policy_runs_a_tick_found_within_its_grace(
    dsn: str, make_scheduler: MakeScheduler
) -> None:
    scheduler = make_scheduler(hourly(missed="skip", misfire_grace=60))
    scheduler.define(now=T0)
    scheduler.tick(now=FIRST + timedelta(seconds=59))
    scheduler.tick(now=FIRST + HOUR + timedelta(seconds=61))
    assert queued_ticks(dsn) == [FIRST]
    assert schedule_row(dsn)["skipped_count"] == 1


@pytest.mark.slow
def test_three_schedulers_queue_each_tick_exactly_once_F15(
    dsn: str, make_scheduler: MakeScheduler
) -> None:
    """F15: three schedulers tick at the same moments, racing on every tick for 2 hours of
    a once-a-minute job: every tick anchor + k * run_every has exactly one task."""
    job = pgqueue.periodic_job(run_every=60, anchor=ANCHOR, name="minutely")(noop)
    schedulers = [make_scheduler(job) for _ in range(3)]
    schedulers[0].define(now=T0)
    steps = [T0 + timedelta(seconds=20 * k) for k in range(1, 361)]
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []
    handled: list[int] = [0, 0, 0]

    def run(index: int) -> None:
        try:
            for moment in steps:
                barrier.wait(timeout=30)
                handled[index] += sum(len(r.queued) for r in schedulers[index].tick(now=moment))
        except BaseException as exc:  # reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    expected = [T0 + timedelta(minutes=k) for k in range(1, 121)]
    assert queued_ticks(dsn, "minutely") == expected
    assert sum(handled) == 120
    assert schedule_row(dsn, "minutely")["runs_count"] == 120


def test_pruning_finished_tasks_does_not_reopen_ticks_F15(
    dsn: str, make_scheduler: MakeScheduler
) -> None:
    scheduler = make_scheduler(hourly(missed="all"))
    scheduler.define(now=T0)
    scheduler.tick(now=FIRST + 2 * HOUR)
    assert len(queued_ticks(dsn)) == 3
    sql(dsn, "UPDATE pgqueue.task SET status = 1, time_ended = now()")
    sql(dsn, "DELETE FROM pgqueue.task WHERE status IN (1, 2, 3)")  # aggressive retention
    scheduler.tick(now=FIRST + 2 * HOUR + timedelta(minutes=10))
    make_scheduler(hourly(missed="all")).tick(now=FIRST + 2 * HOUR + timedelta(minutes=20))
    assert queued_ticks(dsn) == []
    scheduler.tick(now=FIRST + 3 * HOUR)
    assert queued_ticks(dsn) == [FIRST + 3 * HOUR]


def test_tick_finding_its_previous_task_live_is_skipped_and_logged_F13(
    dsn: str, make_scheduler: MakeScheduler, caplog: pytest.LogCaptureFixture
) -> None:
    """F13: a non-overlapping periodic job whose task is STARTED, or failed into RETRY, when
    the next tick fires: the tick is skipped and logged, never a second live row."""
    scheduler = make_scheduler(hourly(can_overlap=False))
    scheduler.define(now=T0)
    scheduler.tick(now=FIRST)
    caplog.set_level(logging.INFO, logger="pgqueue.scheduler")
    for moment, status in ((FIRST + HOUR, states.STARTED), (FIRST + 2 * HOUR, states.RETRY)):
        sql(dsn, "UPDATE pgqueue.task SET status = %s", (status,))
        [result] = scheduler.tick(now=moment)
        assert result.queued == [] and result.overlapped == [moment]
        assert schedule_row(dsn)["last_outcome"] == "skipped (overlap)"
    assert "skipped: its previous task is still live" in caplog.text
    live = sql(dsn, "SELECT count(*) AS n FROM pgqueue.task WHERE status IN (4, 5, 6)")
    assert live[0]["n"] == 1
    sql(dsn, "UPDATE pgqueue.task SET status = 1, time_ended = now()")
    scheduler.tick(now=FIRST + 3 * HOUR)
    assert queued_ticks(dsn) == [FIRST, FIRST + 3 * HOUR]
    row = schedule_row(dsn)
    assert row["runs_count"] == 2 and row["skipped_count"] == 2


@pytest.mark.slow
def test_daylight_saving_through_the_schedule_table_F16(
    dsn: str, make_scheduler: MakeScheduler
) -> None:
    """F16 end to end: over the October switch in Berlin, stepping the clock every 10
    minutes, the hourly job runs once per elapsed hour, the 24 h job once, the 02:30 cron
    job once (not at both 02:30s)."""
    berlin = ZoneInfo("Europe/Berlin")
    anchor = datetime(2026, 1, 1, 9, 0, tzinfo=berlin)
    jobs = [
        pgqueue.periodic_job(run_every=HOUR, anchor=anchor, name="hourly")(noop),
        pgqueue.periodic_job(run_every=24 * HOUR, anchor=anchor, name="daily")(noop),
        pgqueue.periodic_job(cron="30 2 * * *", timezone="Europe/Berlin", name="nightly")(noop),
    ]
    scheduler = make_scheduler(*jobs)
    start = datetime(2026, 10, 24, 12, 0, tzinfo=berlin)
    scheduler.define(now=start)
    end = datetime(2026, 10, 25, 12, 0, tzinfo=berlin)  # 25 hours later
    moment = start.astimezone(UTC)  # UTC, so that adding minutes adds absolute time
    while moment <= end:
        scheduler.tick(now=moment)
        moment += timedelta(minutes=10)
    hourly_ticks = queued_ticks(dsn, "hourly")
    assert len(hourly_ticks) == len(set(hourly_ticks)) == 25
    assert {b - a for a, b in itertools.pairwise(hourly_ticks)} == {HOUR}
    # Absolute time: 09:00 CET is 08:00 UTC, i.e. 10:00 CEST before the switch.
    daily = [t.astimezone(berlin).strftime("%d %H:%M") for t in queued_ticks(dsn, "daily")]
    assert daily == ["25 09:00"]
    nightly = [t.astimezone(berlin) for t in queued_ticks(dsn, "nightly")]
    assert [(t.strftime("%H:%M"), t.utcoffset()) for t in nightly] == [("02:30", 2 * HOUR)]


def test_redefining_a_job_moves_its_ticks_and_keeps_its_counts(
    dsn: str, make_scheduler: MakeScheduler
) -> None:
    make_scheduler(hourly()).define(now=T0)
    make_scheduler(hourly()).tick(now=FIRST)
    defined_at = schedule_row(dsn)["defined_at"]
    make_scheduler(hourly()).define(now=T0 + 2 * HOUR)  # same definition: nothing changes
    assert schedule_row(dsn)["defined_at"] == defined_at
    make_scheduler(hourly(missed="all")).define(now=T0 + 2 * HOUR)  # policy only
    row = schedule_row(dsn)
    assert row["missed"] == "all" and row["next_tick"] == FIRST + HOUR
    half = datetime(2026, 1, 1, 0, 20, tzinfo=UTC)
    moved = pgqueue.periodic_job(run_every=1800, anchor=half, name="hourly")(noop)
    make_scheduler(moved).define(now=T0 + 2 * HOUR)
    row = schedule_row(dsn)
    assert row["run_every"] == timedelta(minutes=30)
    assert row["next_tick"] == datetime(2026, 6, 1, 14, 20, tzinfo=UTC)
    assert row["runs_count"] == 1 and row["last_tick"] == FIRST


def test_unanchored_jobs_are_aligned_to_their_first_definition(
    dsn: str, make_scheduler: MakeScheduler
) -> None:
    job = pgqueue.periodic_job(run_every=600, name="unanchored")(noop)
    make_scheduler(job).define(now=T0)
    make_scheduler(job).define(now=T0 + HOUR)  # a later restart keeps the alignment
    row = schedule_row(dsn, "unanchored")
    assert row["anchor"] == T0 and row["next_tick"] == T0 + timedelta(minutes=10)


def test_job_list_and_next_scheduled_show_the_stored_schedule(
    dsn: str, make_scheduler: MakeScheduler
) -> None:
    jobs = JobRegistry([hourly(), pgqueue.job(name="plain")(noop)])
    with TaskBackend(dsn, registry=jobs) as backend:
        assert backend.next_scheduled() == (None, None)
        info = dict(backend.job_list())
        assert info["hourly"]["type"] == "periodic" and info["hourly"]["next_run"] is None
        assert info["plain"]["type"] == "regular" and "next_run" not in info["plain"]
        scheduler = make_scheduler(*jobs.jobs())
        scheduler.define()  # on the database clock: the first tick is within the hour
        scheduler.tick()
        info = dict(backend.job_list())["hourly"]
        assert info["run_every"] == 3600.0 and info["runs_count"] == 0
        assert 0 < info["next_run"] <= 3600
        name, seconds = backend.next_scheduled()
        assert name == "hourly" and seconds == pytest.approx(info["next_run"], abs=5)
        assert backend.next_scheduled(["plain"]) == (["plain"], None)


@pytest.mark.slow
def test_schedule_command_lists_last_and_next_tick(dsn: str, make_scheduler: MakeScheduler) -> None:
    scheduler = make_scheduler(
        hourly(), pgqueue.periodic_job(cron="0 3 * * *", timezone="UTC")(noop)
    )
    scheduler.define(now=T0)
    scheduler.tick(now=FIRST)
    shown = run_cli(["pgqueue", "schedule"], dsn)
    assert shown.returncode == 0, shown.stderr
    assert "2 periodic jobs" in shown.stdout
    line = next(line for line in shown.stdout.splitlines() if line.strip().startswith("hourly"))
    assert "every 01:00:00" in line and "2026-06-01 12:05:00" in line
    assert "2026-06-01 13:05:00" in line and "queued" in line
    assert "cron 0 3 * * * UTC" in shown.stdout
    as_json = run_cli(["pgqueue", "schedule", "--json"], dsn)
    rows = {row["name"]: row for row in json.loads(as_json.stdout)}
    assert rows["hourly"]["runs_count"] == 1 and rows["noop"]["last_tick"] is None


@pytest.mark.slow
def test_schedule_command_without_a_database_says_what_to_do(empty_dsn: str) -> None:
    shown = run_cli(["pgqueue", "schedule"], empty_dsn)
    assert shown.returncode == 4 and "pgqueue migrate" in shown.stderr
    assert "Traceback" not in shown.stderr
