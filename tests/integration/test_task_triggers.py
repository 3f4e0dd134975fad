"""The notifications the task table's triggers send on a status change (revision
pgqueue_0012_fast_path folded the flow-control wake into ``notify_task_status``)."""

from __future__ import annotations

from pgqueue._db import connect
from tests.support.fixtures import sql


def _notifications(dsn: str, statements: list[str]) -> list[tuple[str, str]]:
    """What a session LISTENing on queue ``q``'s channels hears while ``statements`` run,
    each in its own transaction."""
    with connect(dsn) as listen:
        for event in ("task_queued", "task_started", "task_done"):
            listen.execute(f'LISTEN "q_{event}"')
        for statement in statements:
            sql(dsn, statement)
        return [(n.channel, n.payload) for n in listen.notifies(timeout=1.0)]


def test_a_task_of_a_limited_job_leaving_started_wakes_its_queue_first(dsn: str) -> None:
    """A task whose job has a concurrency limit wakes its queue's workers ('*' on
    ``<queue>_task_queued``) when it leaves STARTED, before its own notification; a task
    without any limit does not."""
    limited, free = (
        row["id"]
        for row in sql(
            dsn,
            "INSERT INTO pgqueue.task (name, queue, concurrency, status) "
            "VALUES ('limited', 'q', 1, 5), ('free', 'q', NULL, 5) RETURNING id::text AS id",
        )
    )
    heard = _notifications(
        dsn,
        [
            f"UPDATE pgqueue.task SET status = 1 WHERE id = '{limited}'",
            f"UPDATE pgqueue.task SET status = 1 WHERE id = '{free}'",
        ],
    )
    assert heard == [("q_task_queued", "*"), ("q_task_done", limited), ("q_task_done", free)]


def test_a_task_of_a_limited_queue_wakes_it_and_a_claim_does_not(dsn: str) -> None:
    """With a concurrency limit on the queue, any task leaving STARTED (to RETRY here) wakes
    it; a task entering STARTED only says so."""
    sql(dsn, "INSERT INTO pgqueue.queue_setting (queue, concurrency) VALUES ('q', 2)")
    (task,) = (
        row["id"]
        for row in sql(
            dsn,
            "INSERT INTO pgqueue.task (name, queue, status) VALUES ('job', 'q', 6) "
            "RETURNING id::text AS id",
        )
    )
    heard = _notifications(
        dsn,
        [
            f"UPDATE pgqueue.task SET status = 5 WHERE id = '{task}'",
            f"UPDATE pgqueue.task SET status = 4 WHERE id = '{task}'",
        ],
    )
    assert heard == [
        ("q_task_started", task),
        ("q_task_queued", "*"),
        ("q_task_queued", task),
    ]
