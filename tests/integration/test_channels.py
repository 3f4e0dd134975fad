"""Every task event's NOTIFY arrives on the channel that ``pgqueue._channels.channel`` names:
the SQL (the migration's triggers, the revoke statement) and Python spell one format."""

from __future__ import annotations

from psycopg.sql import SQL, Identifier

import pgqueue
from pgqueue._channels import TASK_DONE, TASK_QUEUED, TASK_REVOKE, TASK_STARTED, channel
from pgqueue._db import connect
from tests.support.fixtures import sql

QUEUE = "chan_q"


def test_each_task_event_notifies_the_channel_python_names(
    dsn: str, backend: pgqueue.TaskBackend
) -> None:
    events = (TASK_QUEUED, TASK_STARTED, TASK_REVOKE, TASK_DONE)
    with connect(dsn, autocommit=True) as listener:
        for event in events:
            listener.execute(SQL("LISTEN {}").format(Identifier(channel(QUEUE, event))))
        task_id = backend.queue_task("add", a=1, b=2, queue=QUEUE)
        sql(dsn, "UPDATE pgqueue.task SET status = 5 WHERE id = %s", [task_id])  # STARTED
        assert backend.revoke(task_id or "")  # a running task's worker is told
        sql(dsn, "UPDATE pgqueue.task SET status = 1 WHERE id = %s", [task_id])  # SUCCESS
        got = [(n.channel, n.payload) for n in listener.notifies(timeout=5, stop_after=4)]
    assert got == [(channel(QUEUE, event), task_id) for event in events]


def test_backend_channel_is_the_core_function() -> None:
    with pgqueue.TaskBackend("postgresql://localhost/x", name="mail") as backend:  # no connection
        assert backend.channel(TASK_DONE) == channel("mail", TASK_DONE) == "mail_task_done"
        assert backend.channel(TASK_QUEUED, "other") == "other_task_queued"
