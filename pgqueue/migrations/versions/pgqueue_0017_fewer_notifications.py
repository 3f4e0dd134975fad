"""Fewer notifications: an enqueue notifies when it is its queue's one notifier in flight or a
worker waits for work (said so in a table), and one claim at a time sends ``task_started``
(issue 16, F32).

Revision ID: pgqueue_0017_fewer_notifications
Revises: pgqueue_0016_ended_per_minute
Create Date: 2026-12-08

PostgreSQL lets one notifying transaction commit at a time (``PreCommit_Notify`` takes a
database-wide lock and keeps it through the commit's WAL flush), so when every enqueue sent
``<queue>_task_queued``, 8 producers inserting one task per transaction reached 48% of the same
INSERT without the trigger and 32 producers 40% (PostgreSQL 15, 2 CPUs). Now an enqueue
notifies only when someone needs it:

* **``queue_waiter``** (table): a row per queue and worker while that worker's claims come up
  short of its free slots and it LISTENs, so it sleeps until woken; ``expires_at`` (database
  clock) ends a row whose worker died. The worker writes its rows before its next claim and
  deletes them after a second of claims that fill every slot, and when it stops.
* **``queue_lock_key(queue, purpose)``**: the advisory lock keys of a queue below.
* **``notify_task_queued``** (the enqueue trigger) notifies a queue when (1) it gets the
  queue's *notifier* lock (``pg_try_advisory_xact_lock``, held to its commit: the first
  enqueue of a burst notifies, and a LISTEN in psql still hears the queue's enqueues), or (2)
  a worker of the queue waits (an unexpired ``queue_waiter`` row), or (3) it cannot take the
  queue's *enqueue* lock in shared mode. An enqueue that does none of these holds the enqueue
  lock (shared) until it commits; a worker about to sleep first tries that lock in exclusive
  mode (``pg_try_advisory_xact_lock``), then claims (a new snapshot): if it could not take
  it, an enqueue that did not notify is still open and the worker claims again shortly
  instead of sleeping, so that task is not left waiting for ``poll_timeout``. Nobody ever waits for
  either lock (both are only tried), and both are transaction-scoped (fine through a
  transaction pooler).
* **``notify_task_status``** sends ``<queue>_task_started`` only from the claim that holds the
  queue's *started* lock (tried per row, held to its commit): the claims of other workers that
  commit meanwhile send none. Every claim notified before, so the claims of a fleet committed
  one at a time (4 ``pgqueue-worker`` processes on PostgreSQL 15: 2,859 / 3,046 tasks/s, and
  3,422 / 3,747 without ``task_started``). Nothing in pgqueue waits for ``task_started``; the
  dashboard's live pages re-render on any event. ``task_done`` (which ``wait_for_task``
  waits for) and the rest are sent as before.

Why no enqueue's wake-up is lost: an enqueue that saw no waiter row took the shared lock before it
looked, so a worker whose row was written after that look finds the lock held and claims
again once the enqueue has committed; a worker that took the lock first makes the enqueue's
shared try fail, and it notifies; a worker asleep already has its row, which every later
enqueue sees.

No role needs a privilege on ``queue_waiter``: the enqueue trigger reads it through
``queue_has_waiter`` and workers write it through ``wait_for_tasks`` and ``stop_waiting``, all
``SECURITY DEFINER``. The two writers may be run by the roles that may update the task table
when this revision ran (a worker's role granted later needs ``GRANT EXECUTE`` on them; without
it the worker says so once and sleeps up to ``poll_timeout`` when an enqueue did not notify).
An enqueue under REPEATABLE READ or SERIALIZABLE always notifies (its snapshot may be older
than a worker's waiter row), and so does each queue past the 32nd of one statement.

Workers of an earlier version never write waiter rows: restart them right after migrating.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql
from pgqueue.migrations.versions.pgqueue_0012_fast_path import (
    NOTIFY_TASK_QUEUED,
    NOTIFY_TASK_STATUS,
)

revision: str = "pgqueue_0017_fewer_notifications"
down_revision: str | None = "pgqueue_0016_ended_per_minute"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE_FIRST = r"""
CREATE TABLE {s}.queue_waiter (
    queue text NOT NULL,
    worker text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (queue, worker)
);
COMMENT ON TABLE {s}.queue_waiter IS
    'Workers waiting for work (their claims came up short and they LISTEN): while a queue has an unexpired row, every enqueue notifies <queue>_task_queued';
COMMENT ON COLUMN {s}.queue_waiter.queue IS 'Queue the worker claims from';
COMMENT ON COLUMN {s}.queue_waiter.worker IS 'The worker''s id (worker.id)';
COMMENT ON COLUMN {s}.queue_waiter.expires_at IS 'Past this (database clock) the row counts for nothing: its worker stopped renewing it';

CREATE FUNCTION {s}.queue_lock_key(queue text, purpose text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT pg_catalog.hashtextextended('{s} ' || purpose || ' ' || queue, 0)
$$;
COMMENT ON FUNCTION {s}.queue_lock_key(text, text) IS
    'Advisory lock key of a queue for purpose notifier (one notifying enqueue at a time), enqueue (enqueues that did not notify hold it shared; a worker about to sleep tries it) or started (one claim at a time sends task_started): see notify_task_queued and notify_task_status';

-- Read by every enqueue, whatever its role may read: SECURITY DEFINER, every name qualified
-- (no search_path is consulted; none is set, which would cost each call a settings save), in
-- PL/pgSQL, whose plan is kept for the session.
CREATE FUNCTION {s}.queue_has_waiter(queue_name text) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER AS $$
BEGIN
    RETURN EXISTS (SELECT FROM {s}.queue_waiter w
                   WHERE w.queue OPERATOR(pg_catalog.=) queue_name
                     AND w.expires_at OPERATOR(pg_catalog.>) pg_catalog.now());
END
$$;
COMMENT ON FUNCTION {s}.queue_has_waiter(text) IS
    'Whether a worker of the queue waits for work (an unexpired queue_waiter row)';

CREATE FUNCTION {s}.wait_for_tasks(queues text[], worker_id text, lease double precision)
    RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM {s}.queue_waiter
    WHERE queue = ANY(queues) AND worker <> worker_id AND expires_at < now() - interval '1 minute';
    INSERT INTO {s}.queue_waiter (queue, worker, expires_at)
    SELECT DISTINCT q, worker_id, now() + least(greatest(lease, 1), 3600) * interval '1 second'
    FROM unnest(queues) AS q
    ON CONFLICT (queue, worker) DO UPDATE SET expires_at = EXCLUDED.expires_at;
$$;
COMMENT ON FUNCTION {s}.wait_for_tasks(text[], text, double precision) IS
    'Make worker_id a waiter on queues for lease seconds (1 to 3600), and forget the rows of other workers of those queues that expired a minute ago';

CREATE FUNCTION {s}.stop_waiting(worker_id text) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    DELETE FROM {s}.queue_waiter WHERE worker = worker_id;
$$;
COMMENT ON FUNCTION {s}.stop_waiting(text) IS 'worker_id waits for work no more';

CREATE OR REPLACE FUNCTION {s}.notify_task_queued() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    batch record;
    channel text;
    payload text;
    queues integer := 0;
BEGIN
    FOR batch IN
        SELECT queue, count(*) AS n, min(id::text) AS one FROM new_tasks GROUP BY queue
    LOOP
        queues := queues + 1;
        -- Past 32 queues in one statement, notify without holding two more locks each (the
        -- lock table is shared by every session). Under REPEATABLE READ or SERIALIZABLE the
        -- waiter rows are read in the transaction's snapshot, which may predate a worker's.
        IF queues > 32
           OR pg_catalog.pg_try_advisory_xact_lock({s}.queue_lock_key(batch.queue, 'notifier'))
           OR NOT pg_catalog.pg_try_advisory_xact_lock_shared(
                      {s}.queue_lock_key(batch.queue, 'enqueue'))
           OR pg_catalog.current_setting('transaction_isolation') <> 'read committed'
           OR {s}.queue_has_waiter(batch.queue)
        THEN
            channel := batch.queue || '_task_queued';
            payload := CASE WHEN batch.n = 1 THEN batch.one ELSE '*' END;
            IF pg_catalog.pg_notification_queue_usage() < 0.5 THEN
                PERFORM pg_catalog.pg_notify(channel, payload);
            ELSE
                PERFORM {s}.notify_task(channel, payload);
            END IF;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION {s}.notify_task_queued() IS
    'NOTIFY <queue>_task_queued (payload the task id, or * for several) when this transaction holds the queue''s notifier lock, a worker of the queue waits (queue_waiter) or one is settling; otherwise hold the queue''s enqueue lock (shared) to commit';

"""

#: Claims send ``task_started`` only from the claim that holds the queue's started lock.
STARTED_FROM_ONE_CLAIM = """
    IF NEW.status = 5 AND NOT pg_catalog.pg_try_advisory_xact_lock(
                                  {s}.queue_lock_key(NEW.queue, 'started')) THEN
        RETURN NULL; -- another claim of the queue, open, sends task_started
    END IF;
"""

#: The comment of the status trigger's function from this revision on.
STATUS_COMMENT = r"""
COMMENT ON FUNCTION {s}.notify_task_status() IS
    'Tells the queue''s listeners a task changed status (<queue>_task_queued or _task_done, payload its id; <queue>_task_started only from the one claim of the queue that holds its started lock) and, when a task of a limited job or queue left STARTED, wakes the queue''s workers first (<queue>_task_queued, payload *): a task held back by the limit may start now. Above half a full NOTIFY queue it goes through notify_task (skip and warn)';
"""

#: Revision pgqueue_0012_fast_path's status trigger function, with the check above first and
#: the comment above.
_BODY, _COMMENT = NOTIFY_TASK_STATUS.split("COMMENT ON FUNCTION")
assert _BODY.count("BEGIN\n") == 1
NOTIFY_TASK_STATUS_STARTED_ONCE = _BODY.replace(
    "BEGIN\n", "BEGIN" + STARTED_FROM_ONE_CLAIM
) + STATUS_COMMENT.lstrip("\n")

UPGRADE = (
    UPGRADE_FIRST
    + NOTIFY_TASK_STATUS_STARTED_ONCE
    + r"""
REVOKE ALL ON FUNCTION {s}.wait_for_tasks(text[], text, double precision),
    {s}.stop_waiting(text) FROM PUBLIC;
DO $grant$
DECLARE
    holder record;
BEGIN
    FOR holder IN
        SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = '{s}.task'::regclass AND a.privilege_type = 'UPDATE'
          AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION {s}.wait_for_tasks(text[], text, double '
                       'precision), {s}.stop_waiting(text) TO %s',
                       CASE WHEN holder.grantee = 0 THEN 'PUBLIC'
                            ELSE holder.grantee::regrole::text END);
    END LOOP;
END
$grant$;
"""
)

DOWNGRADE = (
    NOTIFY_TASK_STATUS
    + NOTIFY_TASK_QUEUED
    + r"""
COMMENT ON FUNCTION {s}.notify_task_queued() IS
    'One NOTIFY <queue>_task_queued per queue and statement: payload the task id, or * for several tasks';
DROP FUNCTION {s}.stop_waiting(text);
DROP FUNCTION {s}.wait_for_tasks(text[], text, double precision);
DROP FUNCTION {s}.queue_has_waiter(text);
DROP FUNCTION {s}.queue_lock_key(text, text);
DROP TABLE {s}.queue_waiter;
"""
)


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)
