"""batches.monitored_at: when a batch's drift report and alert were done.

A run killed after committing a batch's rows left the batch `done` without its drift report
and alert, and every later run skipped it. Monitoring now resumes on the next run of a `done`
batch whose `monitored_at` is empty. Batches already done are taken as monitored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Written out (not aemon.store's UTCDateTime): a migration keeps building the same schema.
    op.add_column("batches", sa.Column("monitored_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE batches SET monitored_at = finished_at WHERE status = 'done'")


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("monitored_at")
