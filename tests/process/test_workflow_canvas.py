"""Issue 14, chains, groups with a callback, batches that report when done: queued in one
statement, the callback released exactly once, a chain surviving a worker's SIGKILL, bad
input refused with nothing queued, and ``pgqueue show`` listing parents and children."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from pgqueue import Call, TaskBackend, TaskNotAvailable
from pgqueue._errors import ConfigurationError
from tests.support import crash as crash_support
from tests.support.crash import runs, wait_until
from tests.support.fixtures import TEST_JOBS, run_cli, sql

JOBS = [TEST_JOBS, "tests.support.workflow_jobs"]


@pytest.fixture
def wf(dsn: str) -> Iterator[TaskBackend]:
    with TaskBackend(dsn, task_paths=JOBS) as client:
        yield client


def states_of(dsn: str, ids: list[str]) -> list[str]:
    rows = sql(
        dsn,
        "SELECT t.id::text AS id, s.name FROM pgqueue.task t JOIN pgqueue.state s "
        "ON s.code = t.status WHERE t.id = ANY(%s::uuid[])",
        (ids,),
    )
    by_id = {r["id"]: r["name"] for r in rows}
    return [by_id[i] for i in ids]


def task_count(dsn: str) -> int:
    return int(sql(dsn, "SELECT count(*) AS n FROM pgqueue.task")[0]["n"])


def test_chain_runs_steps_in_order_each_after_the_previous(
    wf: TaskBackend, dsn: str, start_worker: Any
) -> None:
    ids = wf.chain(*(Call("step", {"add": n}) for n in (1, 10, 100)))
    assert len(ids) == 3
    assert [
        r["waiting_on"]
        for r in sql(
            dsn,
            "SELECT waiting_on FROM pgqueue.task WHERE id = ANY(%s::uuid[]) ORDER BY waiting_on",
            (ids,),
        )
    ] == [0, 1, 1]
    start_worker(backlog=4, task_paths=JOBS, poll_timeout=1.0)
    assert wf.wait_for_task(ids[-1], timeout=30).result == 111
    times = sql(
        dsn,
        "SELECT c.time_started >= p.time_ended AS after FROM pgqueue.task_dependency d "
        "JOIN pgqueue.task c ON c.id = d.child JOIN pgqueue.task p ON p.id = d.parent "
        "WHERE d.child = ANY(%s::uuid[])",
        (ids,),
    )
    assert [t["after"] for t in times] == [True, True]


def test_a_failing_step_revokes_the_rest_of_the_chain(
    wf: TaskBackend, dsn: str, start_worker: Any
) -> None:
    ids = wf.chain(Call("add", {"a": 1, "b": 1}), Call("fail"), Call("add", {"a": 2, "b": 2}))
    start_worker(backlog=2, task_paths=JOBS, poll_timeout=0.5)
    wait_until(lambda: states_of(dsn, ids)[2] != "QUEUED", 30, "the last step to end")
    assert states_of(dsn, ids) == ["SUCCESS", "FAILURE", "REVOKED"]


def test_group_callback_runs_once_and_sees_results_in_order(
    wf: TaskBackend, dsn: str, start_worker: Any
) -> None:
    queued = wf.group(
        [Call("add", {"a": n, "b": 0}) for n in range(5)], then=Call("collect", {"tag": "g"})
    )
    assert len(queued.queued) == 5 and queued.then is not None
    start_worker(backlog=4, task_paths=JOBS, poll_timeout=1.0)
    done = wf.wait_for_task(queued.then, timeout=30)
    assert done.result == {
        "tag": "g",
        "parents": [[i, "SUCCESS", n] for n, i in enumerate(queued.queued)],
    }
    assert done.attempts == 1


def test_a_failed_member_revokes_the_callback_unless_it_opts_in(
    wf: TaskBackend, dsn: str, start_worker: Any
) -> None:
    members = [Call("add", {"a": 1, "b": 1}), Call("fail")]
    plain = wf.group(members, then=Call("collect"))
    anyway = wf.group(members, then=Call("collect_anyway"))
    assert plain.then and anyway.then
    start_worker(backlog=2, task_paths=JOBS, poll_timeout=0.5)
    ran = wf.wait_for_task(anyway.then, timeout=30)
    assert [p[1] for p in ran.result["parents"]] == ["SUCCESS", "FAILURE"]
    revoked = wf.wait_for_task(plain.then, timeout=30)
    assert revoked.status_string() == "REVOKED"
    assert plain.queued[1] in (revoked.error or "") and "FAILURE" in (revoked.error or "")


def test_batch_callback_is_told_how_many_succeeded_failed_were_revoked(
    wf: TaskBackend, dsn: str, start_worker: Any
) -> None:
    batch = wf.queue_tasks("fail", [{"n": n} for n in range(3)], then=Call("tally"))
    assert batch.then is not None and len(batch.queued) == 3
    assert wf.revoke(batch.queued[0])
    start_worker(backlog=2, task_paths=JOBS, poll_timeout=0.5)
    done = wf.wait_for_task(batch.then, timeout=30)
    assert done.result == {"succeeded": 0, "failed": 2, "revoked": 1}
    ok = wf.queue_tasks("add", [{"a": n, "b": n} for n in range(4)], then=Call("tally"))
    assert ok.then is not None
    assert wf.wait_for_task(ok.then, timeout=30).result == {
        "succeeded": 4,
        "failed": 0,
        "revoked": 0,
    }


def test_a_thousand_parents_finishing_on_eight_workers_release_the_callback_once(
    wf: TaskBackend, dsn: str, start_worker: Any
) -> None:
    batch = wf.queue_tasks("add", [{"a": n, "b": 1} for n in range(1000)], then=Call("tally"))
    assert batch.then is not None
    for _ in range(8):
        start_worker(backlog=8, task_paths=JOBS, poll_timeout=0.5, lease=30.0)
    done = wf.wait_for_task(batch.then, timeout=120)
    assert done.result == {"succeeded": 1000, "failed": 0, "revoked": 0}
    assert done.attempts == 1
    row = sql(
        dsn,
        "SELECT c.waiting_on, c.time_started >= max(p.time_ended) AS after "
        "FROM pgqueue.task c JOIN pgqueue.task_dependency d ON d.child = c.id "
        "JOIN pgqueue.task p ON p.id = d.parent WHERE c.id = %s GROUP BY c.id",
        (batch.then,),
    )[0]
    assert row == {"waiting_on": 0, "after": True}


def test_chain_survives_a_worker_sigkill_at_a_step(dsn: str) -> None:
    crash_support.make_runs_table(dsn)
    paths = "tests.support.workflow_jobs"
    with TaskBackend(dsn, task_paths=[paths]) as client, crash_support.worker_processes() as start:
        ids = client.chain(*(Call("slow_step", {"add": n, "seconds": 30}) for n in (1, 2, 3)))
        for _ in range(2):
            start(dsn, "--lease", "2", "--task-paths", paths)
        for task_id in ids:
            victim = wait_until(
                lambda task_id=task_id: (r := runs(dsn, task_id)) and r[-1]["pid"],
                30,
                "the step to start",
            )
            os.kill(victim, signal.SIGKILL)
            start(dsn, "--lease", "2", "--task-paths", paths)
            assert client.wait_for_task(task_id, timeout=60).status_string() == "SUCCESS"
        assert client.wait_for_task(ids[-1], timeout=60).result == 6
        assert [len(runs(dsn, i)) for i in ids] == [2, 2, 2]


def test_bad_workflows_are_refused_and_nothing_is_queued(wf: TaskBackend, dsn: str) -> None:
    with pytest.raises(TaskNotAvailable):
        wf.group([Call("add", {"a": 1, "b": 1})], then=Call("no_such_job"))
    with pytest.raises(TaskNotAvailable):
        wf.queue_tasks("add", [{"a": 1, "b": 1}], then=Call("no_such_job"))
    with pytest.raises(TaskNotAvailable):
        wf.chain(Call("add", {"a": 1, "b": 1}), Call("no_such_job"))
    with pytest.raises(ConfigurationError, match="can_overlap"):
        wf.chain(Call("single", {"key": "k"}), Call("add", {"a": 1, "b": 1}))
    with pytest.raises(ConfigurationError, match="at least one"):
        wf.chain()
    assert task_count(dsn) == 0


def test_a_rollback_leaves_no_part_of_a_workflow(wf: TaskBackend, dsn: str) -> None:
    from pgqueue._db import connect

    with connect(dsn) as conn, conn.transaction(force_rollback=True):
        ids = wf.chain(
            Call("add", {"a": 1, "b": 1}), Call("add", {"a": 2, "b": 2}), connection=conn
        )
        group = wf.group([Call("add", {"a": 1, "b": 1})], then=Call("tally"), connection=conn)
        assert len(ids) == 2 and group.then
    assert task_count(dsn) == 0
    assert sql(dsn, "SELECT count(*) AS n FROM pgqueue.task_dependency")[0]["n"] == 0


def test_show_lists_parents_and_children_and_the_view_shows_progress(
    wf: TaskBackend, dsn: str
) -> None:
    ids = wf.chain(Call("add", {"a": 1, "b": 1}), Call("add", {"a": 2, "b": 2}))
    shown = run_cli(["pgqueue", "show", ids[0]], dsn)
    assert shown.returncode == 0, shown.stderr
    assert "child" in shown.stdout and ids[1] in shown.stdout
    shown = run_cli(["pgqueue", "show", ids[1], "--json"], dsn)
    assert shown.returncode == 0, shown.stderr
    assert ids[0] in shown.stdout and '"parents"' in shown.stdout
    progress = sql(dsn, "SELECT * FROM pgqueue.workflow_progress WHERE id = %s", (ids[1],))[0]
    assert progress["parents"] == 1 and progress["parents_pending"] == 1
    assert progress["waiting_on"] == 1 and progress["state"] == "QUEUED"


def test_group_callback_runs_once_when_a_worker_is_killed_running_its_members(
    dsn: str,
) -> None:
    crash_support.make_runs_table(dsn)
    paths = "tests.support.workflow_jobs"
    with TaskBackend(dsn, task_paths=[paths]) as client, crash_support.worker_processes() as start:
        members = [Call("slow_step", {"add": n, "seconds": 30}) for n in range(4)]
        group = client.group(members, then=Call("tally"))
        assert group.then is not None
        first = start(dsn, "--lease", "2", "--backlog", "4", "--task-paths", paths)
        wait_until(lambda: all(runs(dsn, i) for i in group.queued), 30, "every member to start")
        os.kill(first.pid, signal.SIGKILL)  # mid-run: nothing of theirs is finished
        start(dsn, "--lease", "2", "--backlog", "4", "--task-paths", paths)
        done = client.wait_for_task(group.then, timeout=60)
        assert done.result == {"succeeded": 4, "failed": 0, "revoked": 0}
        assert done.attempts == 1
        assert [len(runs(dsn, i)) for i in group.queued] == [2, 2, 2, 2]
