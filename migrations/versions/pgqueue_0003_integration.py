"""Application integration: SQL enqueue function and more (the integration issue fills this in).

Revision ID: pgqueue_0003_integration
Revises: pgqueue_0002_schedule
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from pgqueue.migrations import forget_revision, record_revision

revision: str = "pgqueue_0003_integration"
down_revision: str | None = "pgqueue_0002_schedule"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    record_revision(revision)


def downgrade() -> None:
    forget_revision(revision)
