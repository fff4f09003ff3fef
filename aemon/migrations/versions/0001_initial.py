"""The anomaly database: batches, anomalies, drift reports, feedback, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from aemon.store: a migration must keep building the same
# schema when the code's tables change later.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("n_records", sa.Integer, nullable=False),
        sa.Column("n_flagged", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint(
            "content_sha256",
            "model_name",
            "model_version",
            name=op.f("uq_batches_content_sha256_model_name_model_version"),
        ),
        sa.CheckConstraint(
            "status IN ('running', 'done', 'failed', 'quarantined')", name=op.f("ck_batches_status")
        ),
    )
    op.create_table(
        "anomalies",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.Column("record_key", sa.Text, nullable=False),
        sa.Column("timestamp", _utc(), nullable=True),
        sa.Column("score", sa.Double, nullable=False),
        sa.Column("threshold", sa.Double, nullable=False),
        sa.Column("p_value", sa.Double, nullable=True),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anomalies")),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_anomalies_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("batch_id", "record_key", name=op.f("uq_anomalies_batch_id_record_key")),
    )
    op.create_index(
        op.f("ix_anomalies_model_name_model_version"), "anomalies", ["model_name", "model_version"]
    )
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.Column("drift_detected", sa.Boolean, nullable=False),
        sa.Column("drifted_share", sa.Double, nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("html_path", sa.Text, nullable=False),
        sa.Column("json_path", sa.Text, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_reports")),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_drift_reports_batch_id_batches"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_drift_reports_batch_id"), "drift_reports", ["batch_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("anomaly_id", BIGINT, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.ForeignKeyConstraint(
            ["anomaly_id"],
            ["anomalies.id"],
            name=op.f("fk_feedback_anomaly_id_anomalies"),
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "verdict IN ('true_positive', 'false_positive')", name=op.f("ck_feedback_verdict")
        ),
    )
    op.create_index(op.f("ix_feedback_anomaly_id"), "feedback", ["anomaly_id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_alerts_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("batch_id", "target", name=op.f("uq_alerts_batch_id_target")),
        sa.CheckConstraint("status IN ('sent', 'failed')", name=op.f("ck_alerts_status")),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("feedback")
    op.drop_table("drift_reports")
    op.drop_table("anomalies")
    op.drop_table("batches")
