"""One drift report per batch: drift_reports.batch_id becomes unique.

Two processes that scored one batch at once could each record a report. Duplicates already
stored are reduced to the newest report of each batch before the index becomes unique.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "DELETE FROM drift_reports WHERE id NOT IN "
        "(SELECT keep FROM (SELECT MAX(id) AS keep FROM drift_reports GROUP BY batch_id) AS newest)"
    )
    op.drop_index(op.f("ix_drift_reports_batch_id"), table_name="drift_reports")
    op.create_index(op.f("ix_drift_reports_batch_id"), "drift_reports", ["batch_id"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_drift_reports_batch_id"), table_name="drift_reports")
    op.create_index(op.f("ix_drift_reports_batch_id"), "drift_reports", ["batch_id"])
