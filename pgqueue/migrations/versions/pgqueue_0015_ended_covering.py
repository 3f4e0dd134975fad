"""The charts of the last day and week read the index of finished tasks alone (issue 18).

Revision ID: pgqueue_0015_ended_covering
Revises: pgqueue_0014_claim_by_job
Create Date: 2026-12-07

* **``task_ended``** (index) replaces ``task_time_ended``: the finished tasks (SUCCESS,
  FAILURE, REVOKED) by ``time_ended``, as before, now carrying each task's ``queue`` and
  ``status`` (``INCLUDE``). The dashboard's day and week charts count the tasks finished in the
  range per queue and period, failures apart (``QUEUE_ACTIVITY``): with ``task_time_ended``
  PostgreSQL read every one of those rows from the table for its queue and status, 0.67 s for
  2,000,000 tasks finished within the day; from this index alone (an index-only scan of the
  pages vacuum marked all-visible, which is the history) 0.27 s. Retention (``PRUNE``) and the
  overview's last-hour views read it by ``time_ended`` as they read the index it replaces.
  Each finish still writes one entry to one index of finished tasks, a few bytes longer.
  Building the index reads the task table once, blocking writes meanwhile: on a large table,
  create it beforehand with ``CREATE INDEX CONCURRENTLY`` under the same name and definition,
  and this revision skips it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql

revision: str = "pgqueue_0015_ended_covering"
down_revision: str | None = "pgqueue_0014_claim_by_job"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
CREATE INDEX IF NOT EXISTS task_ended ON {s}.task (time_ended) INCLUDE (queue, status)
    WHERE status IN (1, 2, 3);
COMMENT ON INDEX {s}.task_ended IS
    'Finished tasks by end time, with their queue and status: retention (prune), the overview''s last hour and the charts'' day and week, read without the table';
DROP INDEX {s}.task_time_ended;
"""

DOWNGRADE = r"""
CREATE INDEX task_time_ended ON {s}.task (time_ended) WHERE status IN (1, 2, 3);
COMMENT ON INDEX {s}.task_time_ended IS 'Finished tasks by end time, for retention (prune)';
DROP INDEX {s}.task_ended;
"""


def upgrade() -> None:
    run_sql(UPGRADE)
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE)
