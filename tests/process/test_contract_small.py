"""Issue 12, item 9: ``--burst`` with ``--processes`` runs until nothing is left, and
``pgqueue show`` of a task with huge values answers fast with a bounded preview."""

from __future__ import annotations

import json
import time
from typing import Any

from pgqueue import TaskBackend, states
from pgqueue._ops import PREVIEW_CHARS
from tests.support import crash as crash_support
from tests.support.fixtures import run_cli, sql

runs_dsn = crash_support.runs_dsn
procs = crash_support.procs
client_jobs = crash_support.client_jobs


def test_burst_with_processes_runs_until_nothing_is_left(
    runs_dsn: str, client: TaskBackend, procs: Any
) -> None:
    """``--processes 2 --max-tasks 1 --burst`` with twenty tasks: children that reached
    --max-tasks are replaced until the queue is empty (it exited after two), then exit 0."""
    ids = [client.queue_task("tracked", key=f"t{i}") for i in range(20)]
    supervisor = procs(runs_dsn, "--processes", "2", "--max-tasks", "1", "--burst")
    assert supervisor.wait(240) == 0, supervisor.log
    rows = sql(runs_dsn, "SELECT status, count(*) AS n FROM pgqueue.task GROUP BY status")
    assert rows == [{"status": states.SUCCESS, "n": 20}], supervisor.log
    assert len({r["worker"] for r in sql(runs_dsn, "SELECT worker FROM pgqueue.task")}) == 20
    assert len(ids) == 20


def test_show_of_huge_kwargs_is_a_fast_bounded_preview(runs_dsn: str, client: TaskBackend) -> None:
    """46 MB of kwargs: ``pgqueue show`` prints a preview at once (it ran 90 s at full CPU),
    ``--json`` too; ``--full`` shows a long value whole."""
    task_id = client.queue_task("tracked", key="huge")
    sql(
        runs_dsn,
        "UPDATE pgqueue.task SET kwargs = (SELECT jsonb_build_object('items', jsonb_agg(g)) "
        "FROM generate_series(1000000, 6000000) g), traceback = repeat('line\n', 100000) "
        "WHERE id = %s",
        (task_id,),
    )
    started = time.monotonic()
    shown = run_cli(["pgqueue", "show", task_id], runs_dsn, timeout=60)
    elapsed = time.monotonic() - started
    assert shown.returncode == 0, shown.stderr
    assert elapsed < 15, f"pgqueue show took {elapsed:.1f}s"
    assert len(shown.stdout) < 1_000_000  # the kwargs alone are 40 MB of text
    assert "characters in all)" in shown.stdout

    as_json = run_cli(["pgqueue", "show", task_id, "--json"], runs_dsn, timeout=60)
    task = json.loads(as_json.stdout)
    assert task["kwargs"].startswith('{"items": [1000000, 1000001')
    assert task["kwargs"].endswith(" characters in all)")
    assert len(task["traceback"]) < PREVIEW_CHARS + 100

    small = client.queue_task("tracked", key="k" * (PREVIEW_CHARS + 500))
    full = json.loads(run_cli(["pgqueue", "show", small, "--json", "--full"], runs_dsn).stdout)
    assert full["kwargs"] == {"key": "k" * (PREVIEW_CHARS + 500)}
    cut = json.loads(run_cli(["pgqueue", "show", small, "--json"], runs_dsn).stdout)
    assert isinstance(cut["kwargs"], str) and cut["kwargs"].startswith('{"key": "kkk')
