"""The tables as the code sees them. Alembic's migrations (aemon/migrations/versions) hold
the history that builds them; tests check that `alembic upgrade head` and this metadata agree."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from aemon.store.records import ALERT_STATUSES, BATCH_STATUSES, VERDICTS
from aemon.store.values import as_utc


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is stored as naive UTC
    and given its UTC zone back when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        utc = as_utc(value)
        if utc is None:
            return None
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# BIGINT keys where rows can grow without bound; SQLite needs INTEGER for an autoincrement key.
_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


batches_table = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("n_records", sa.Integer, nullable=False),
    sa.Column("n_flagged", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("monitored_at", UTCDateTime, nullable=True),  # drift report and alert done (0003)
    sa.UniqueConstraint("content_sha256", "model_name", "model_version"),
    sa.CheckConstraint(_in("status", BATCH_STATUSES), name="status"),
)

anomalies_table = sa.Table(
    "anomalies",
    metadata,
    sa.Column("id", _BIGINT, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    sa.Column("record_key", sa.Text, nullable=False),
    sa.Column("timestamp", UTCDateTime, nullable=True),
    sa.Column("score", sa.Double, nullable=False),
    sa.Column("threshold", sa.Double, nullable=False),
    sa.Column("p_value", sa.Double, nullable=True),
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("details", _JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # Leads with batch_id, so it is also the index for per-batch lookups.
    sa.UniqueConstraint("batch_id", "record_key"),
    sa.Index(None, "model_name", "model_version"),
)

drift_reports_table = sa.Table(
    "drift_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "batch_id",
        sa.Integer,
        sa.ForeignKey("batches.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
        unique=True,  # one report per batch: a second scoring replaces it (migration 0002)
    ),
    sa.Column("drift_detected", sa.Boolean, nullable=False),
    sa.Column("drifted_share", sa.Double, nullable=False),
    sa.Column("details", _JSON, nullable=False),
    sa.Column("html_path", sa.Text, nullable=False),
    sa.Column("json_path", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

feedback_table = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "anomaly_id",
        _BIGINT,
        sa.ForeignKey("anomalies.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("verdict", sa.String(16), nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint(_in("verdict", VERDICTS), name="verdict"),
)

alerts_table = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("payload", _JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("batch_id", "target"),
    sa.CheckConstraint(_in("status", ALERT_STATUSES), name="status"),
)
