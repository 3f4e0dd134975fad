"""Claims read only their own jobs' tasks (issue 16, F33 "foreign backlog").

Revision ID: pgqueue_0014_claim_by_job
Revises: pgqueue_0013_queue_stats
Create Date: 2026-12-07

* **``task_claimable_job``** (index) replaces ``task_claimable``: the claimable tasks (QUEUED
  and RETRY, no workflow parent left to wait for) per queue *and job*, in claim order
  ``(queue, name, priority DESC, run_at, id)``. The claim walked ``task_claimable (queue,
  priority DESC, run_at, id)`` and kept the tasks of its worker's jobs, so every task of
  another job queued ahead of them was read: with 200,000 tasks of a job the worker does not
  know in its queue, each empty claim read 3,856 buffers in 17 ms and the pickup of its own
  job's task took 120-220 ms instead of ~3 ms. The claim now reads each of its jobs through
  this index (see ``pgqueue._store.claims``), never another job's tasks. ``task_claimable``
  served nothing else that needs its order (the overview counts every claimable task, which
  any index of the same predicate gives; the next due time of a worker's queues is a skip
  scan of either index, over priorities then, over jobs and priorities now: 0.2 ms with 30
  jobs in the queue), so it goes: each enqueue, claim and finish still writes one claim
  index, not two.
  Building the index reads the task table once, blocking writes meanwhile: on a large table,
  create it beforehand with ``CREATE INDEX CONCURRENTLY`` under the same name and definition,
  and this revision skips it.
* **``flow_take``** walks only the scopes (job, limit_key) of the jobs it was given: it
  walked every limited job's scopes of the queue in turn and passed over the others' one by
  one, each counted against its budget of scopes, so another worker's 1,000 limit keys took
  a claim's whole budget and left its own limited tasks unclaimed. The round-robin cursor
  (``flow_turn``) and the order of the walk are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision, run_sql
from pgqueue.migrations.versions.pgqueue_0010_flow_turns import UPGRADE as FLOW_TURNS

revision: str = "pgqueue_0014_claim_by_job"
down_revision: str | None = "pgqueue_0013_queue_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The filter of the scope walk's two statements in ``flow_take`` (pgqueue_0010_flow_turns),
#: and what this revision puts there: only the scopes of the jobs given.
_OLD_SCOPES = "AND (x.concurrency IS NOT NULL OR x.rate_count IS NOT NULL)"
_NEW_SCOPES = (
    "AND (x.concurrency IS NOT NULL OR x.rate_count IS NOT NULL)\n"
    "              AND x.name = ANY(jobs) -- never another worker's scopes (F33)"
)
#: Where they stand: after the status filter of the walk (the picks have the same filter
#: after another line).
_WALK = "WHERE x.queue = queue_name AND x.status IN (4, 6) AND x.waiting_on = 0\n              "

UPGRADE = r"""
CREATE INDEX IF NOT EXISTS task_claimable_job ON {s}.task (queue, name, priority DESC, run_at, id)
    WHERE status IN (4, 6) AND waiting_on = 0;
COMMENT ON INDEX {s}.task_claimable_job IS
    'Claim order of claimable (QUEUED, RETRY) tasks without a parent to wait for, per queue and job: a claim reads each of its jobs, never another job''s backlog';
DROP INDEX {s}.task_claimable;
"""

DOWNGRADE = r"""
CREATE INDEX task_claimable ON {s}.task (queue, priority DESC, run_at, id)
    WHERE status IN (4, 6) AND waiting_on = 0;
COMMENT ON INDEX {s}.task_claimable IS
    'Claim order of claimable (QUEUED, RETRY, no parent left to wait for) tasks per queue';
DROP INDEX {s}.task_claimable_job;
"""


def _flow_take(walk_filter: str) -> str:
    """``{s}.flow_take`` as revision pgqueue_0010_flow_turns created it, with the filter of its
    scope walk ``walk_filter``."""
    start = FLOW_TURNS.index("CREATE FUNCTION {s}.flow_take(")
    end = FLOW_TURNS.index("$$;", start) + len("$$;")
    body = FLOW_TURNS[start:end].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    if body.count(_WALK + _OLD_SCOPES) != 2:
        raise RuntimeError("flow_take of pgqueue_0010_flow_turns is not the one expected")
    return body.replace(_WALK + _OLD_SCOPES, _WALK + walk_filter) + "\n"


def upgrade() -> None:
    run_sql(UPGRADE + _flow_take(_NEW_SCOPES))
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
    run_sql(DOWNGRADE + _flow_take(_OLD_SCOPES))
