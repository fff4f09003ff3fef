"""The anomaly database: batch ledger, flagged records, drift reports, feedback and alerts.

The only aemon module that imports SQLAlchemy (and Alembic, which manages the schema). Nothing
SQLAlchemy-shaped leaves it: methods take and return plain values and frozen dataclasses, and
database errors come out as `StoreError`.

Guarantees, on SQLite and PostgreSQL alike:

- a batch's anomaly rows and its `done` status commit in one transaction, so a crash in the
  middle leaves no partial rows (the batch stays `running` and is taken over on the next try);
- writes are idempotent: re-claiming a `done` batch returns None, re-completing it changes
  nothing, and two processes scoring the same batch at once leave one set of rows;
- timestamps go in and come out as timezone-aware UTC datetimes (a naive one is taken as UTC).

Example:
    >>> store = AnomalyStore("sqlite:///.aemon/aemon.db")  # doctest: +SKIP
    >>> batch = store.claim_batch(source="inbox/a.csv", content_sha256=sha,
    ...                           model_name="cpu", model_version="3")  # doctest: +SKIP
    >>> if batch is not None:  # None: already scored by this model
    ...     store.complete_batch(batch.id, rows, n_records=len(frame))  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import gc
import itertools
import json
import logging
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine

from aemon import config
from aemon.errors import ConfigError, StoreError

__all__ = [
    "ALERT_STATUSES",
    "BATCH_STATUSES",
    "VERDICTS",
    "AlertRow",
    "Anomaly",
    "AnomalyStore",
    "Batch",
    "DriftReportRow",
    "FeedbackRow",
    "metadata",
]

_log = logging.getLogger(__name__)

BATCH_STATUSES = ("running", "done", "failed", "quarantined")
VERDICTS = ("true_positive", "false_positive")
ALERT_STATUSES = ("sent", "failed")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_PG_CONNECT_TIMEOUT_S = 10
# Rows per executemany call inside complete_batch; progress is reported between chunks.
_CHUNK_ROWS = 5_000
# pg_advisory_xact_lock key that serialises concurrent migrations on one PostgreSQL database.
MIGRATION_LOCK_KEY = 0x61656D6F6E  # "aemon"
# Connection option that makes SQLite start a transaction with BEGIN IMMEDIATE.
WRITE_OPTION = "aemon_write"
_VERSION_TABLE = "alembic_version"
_SHA256 = re.compile(r"[0-9a-f]{64}")


# --- schema ----------------------------------------------------------------------------------
# The tables as the code sees them. Alembic's versions/ hold the history that builds them;
# tests check that `alembic upgrade head` and this metadata agree.


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is stored as naive UTC
    and given its UTC zone back when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        utc = _as_utc(value)
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


# --- values that come out --------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One batch scored (or being scored) by one model version."""

    id: int
    source: str
    content_sha256: str
    model_name: str
    model_version: str
    status: str  # running | done | failed | quarantined
    n_records: int
    n_flagged: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class Anomaly:
    """A flagged record: `score > threshold` (higher score = more anomalous)."""

    id: int
    batch_id: int
    record_key: str
    timestamp: datetime | None  # time-series points have one, images do not
    score: float
    threshold: float
    p_value: float | None
    model_name: str
    model_version: str
    details: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class FeedbackRow:
    """A verdict on an anomaly, with the anomaly's score and model for recalibration."""

    id: int
    anomaly_id: int
    verdict: str  # true_positive | false_positive
    note: str | None
    created_at: datetime
    batch_id: int
    record_key: str
    score: float
    threshold: float
    p_value: float | None
    model_name: str
    model_version: str


@dataclass(frozen=True)
class DriftReportRow:
    """A drift report of one batch, with the batch's model."""

    id: int
    batch_id: int
    drift_detected: bool
    drifted_share: float
    details: dict[str, Any]
    html_path: str
    json_path: str
    created_at: datetime
    model_name: str
    model_version: str


@dataclass(frozen=True)
class AlertRow:
    """The delivery state of one batch's alert to one target."""

    id: int
    batch_id: int
    target: str
    status: str  # sent | failed
    attempts: int
    last_error: str | None
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime


# --- the store -------------------------------------------------------------------------------


class AnomalyStore:
    """The anomaly database at `url` (default `config.database_url()`).

    Opening a new or outdated database applies the Alembic migrations first. SQLite runs in WAL
    mode with a busy timeout and foreign keys on, so several processes can share one file.
    """

    def __init__(self, url: str | None = None) -> None:
        self._url = url or config.database_url()
        self._engine = create_store_engine(self._url)
        self.url = _safe_url(self._url)
        try:
            self._ensure_schema()
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"AnomalyStore({self.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections (the store can still be used: it reconnects)."""
        self._engine.dispose()

    # -- schema --

    def upgrade(self) -> str:
        """Apply every pending migration (`alembic upgrade head`); returns the revision."""
        cfg = _alembic_config()
        try:
            with self._transaction("upgrading the schema", write=True) as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                revision = ", ".join(sorted(_current_heads(conn)))
        except CommandError as exc:
            raise StoreError(f"cannot upgrade the schema of {self.url}: {exc}") from exc
        if not revision:  # pragma: no cover - upgrade always stamps a revision
            raise StoreError(f"no schema revision in {self.url} after upgrade")
        return revision

    def current_revision(self) -> str | None:
        """The schema revision of the database, None for an empty database."""
        with self._transaction("reading the schema revision") as conn:
            heads = _current_heads(conn)
        return ", ".join(sorted(heads)) or None

    def _ensure_schema(self) -> None:
        with self._transaction("reading the schema revision") as conn:
            current = _current_heads(conn)
        script = _script_directory()
        heads = set(script.get_heads())
        if current == heads:
            return
        unknown = current - {rev.revision for rev in script.walk_revisions()}
        if unknown:
            msg = (
                f"database {self.url} has schema revision {', '.join(sorted(unknown))}, which "
                f"this aemon does not know (newest known: {', '.join(sorted(heads))}); "
                "upgrade aemon"
            )
            raise StoreError(msg)
        _log.info("migrating %s from %s to %s", self.url, sorted(current) or "empty", heads)
        self.upgrade()

    # -- batches --

    def claim_batch(
        self, *, source: str, content_sha256: str, model_name: str, model_version: str
    ) -> Batch | None:
        """Claim a batch for scoring by one model version.

        Inserts a `running` batch, or takes over an existing one that is `running` (its process
        died) or `failed`. Returns None when the batch is `done` or `quarantined` for this model:
        the caller skips it, and nothing changes.
        """
        _check_sha256(content_sha256)
        _check_text(source=source, model_name=model_name, model_version=model_version)
        now = _utcnow()
        key = (
            (batches_table.c.content_sha256 == content_sha256)
            & (batches_table.c.model_name == model_name)
            & (batches_table.c.model_version == model_version)
        )
        with self._transaction(f"claiming batch {source}", write=True) as conn:
            stmt = (
                self._insert(batches_table)
                .values(
                    source=source,
                    content_sha256=content_sha256,
                    model_name=model_name,
                    model_version=model_version,
                    status="running",
                    n_records=0,
                    n_flagged=0,
                    started_at=now,
                )
                .on_conflict_do_nothing(index_elements=["content_sha256", "model_name", "model_version"])
                .returning(*batches_table.c)
            )
            row = conn.execute(stmt).one_or_none()
            if row is not None:
                return _batch(row)
            existing = conn.execute(sa.select(batches_table).where(key).with_for_update()).one()
            if existing.status in ("done", "quarantined"):
                _log.info(
                    "batch %s is %s for %s/%s: skipped",
                    existing.id,
                    existing.status,
                    model_name,
                    model_version,
                )
                return None
            _log.info("taking over %s batch %s", existing.status, existing.id)
            taken = conn.execute(
                sa.update(batches_table)
                .where(batches_table.c.id == existing.id)
                .values(status="running", source=source, error=None, started_at=now, finished_at=None)
                .returning(*batches_table.c)
            ).one()
            return _batch(taken)

    def complete_batch(
        self,
        batch_id: int,
        anomalies: Iterable[Mapping[str, Any]],
        *,
        n_records: int,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Store a batch's flagged records and mark it `done`, in one transaction.

        Each anomaly maps `record_key`, `score` and `threshold` (flagged when score > threshold),
        and optionally `timestamp`, `p_value` and `details` (JSON-able); the model name and
        version come from the batch. `anomalies` may be a generator: rows are checked and
        written a chunk at a time, and a bad row rolls back the whole batch (ConfigError).
        Rows already stored are skipped, and a batch already `done` is left as it is.
        `on_progress(n_written)` is called inside the transaction after each chunk of rows.
        Returns the number of rows inserted.
        """
        if n_records < 0:
            raise ConfigError(f"n_records must be >= 0, got {n_records}")
        with _gc_paused(), self._transaction(f"completing batch {batch_id}", write=True) as conn:
            batch = conn.execute(
                sa.select(batches_table).where(batches_table.c.id == batch_id).with_for_update()
            ).one_or_none()
            if batch is None:
                raise StoreError(f"batch {batch_id} does not exist in {self.url}")
            if batch.status == "done":
                _log.info("batch %s is already done: nothing stored", batch_id)
                return 0
            if batch.status == "quarantined":
                raise StoreError(f"batch {batch_id} is quarantined: claim it before completing")
            common = {
                "batch_id": batch_id,
                "model_name": batch.model_name,
                "model_version": batch.model_version,
                "created_at": _utcnow(),
            }
            count = (
                sa.select(sa.func.count())
                .select_from(anomalies_table)
                .where(anomalies_table.c.batch_id == batch_id)
            )
            n_before = conn.scalar(count) or 0
            # Plain executemany: psycopg pipelines it, while RETURNING would make SQLAlchemy
            # build multi-row VALUES statements that psycopg parses slowly (4x slower).
            stmt = self._insert(anomalies_table).on_conflict_do_nothing(
                index_elements=["batch_id", "record_key"]
            )
            n_written, numbered = 0, enumerate(anomalies)
            while chunk := list(itertools.islice(numbered, _CHUNK_ROWS)):
                conn.execute(stmt, [_anomaly_values(i, a) | common for i, a in chunk])
                n_written += len(chunk)
                if on_progress is not None:
                    on_progress(n_written)
            # The batch row is locked, so no one else adds rows to this batch meanwhile.
            n_flagged = conn.scalar(count) or 0
            n_inserted = n_flagged - n_before
            conn.execute(
                sa.update(batches_table)
                .where(batches_table.c.id == batch_id)
                .values(
                    status="done",
                    n_records=n_records,
                    n_flagged=n_flagged,
                    error=None,
                    finished_at=common["created_at"],
                )
            )
        _log.info("batch %s done: %d records, %d flagged", batch_id, n_records, n_flagged)
        return n_inserted

    def fail_batch(self, batch_id: int, error: str, *, quarantined: bool = False) -> None:
        """Mark a batch `failed` (retried on the next claim) or `quarantined` (never retried).

        A batch already `done` stays done.
        """
        status = "quarantined" if quarantined else "failed"
        with self._transaction(f"marking batch {batch_id} {status}", write=True) as conn:
            self._require_batch(conn, batch_id)
            result = conn.execute(
                sa.update(batches_table)
                .where((batches_table.c.id == batch_id) & (batches_table.c.status != "done"))
                .values(status=status, error=error, finished_at=_utcnow())
            )
            if result.rowcount == 0:
                _log.warning("batch %s is done; not marking it %s: %s", batch_id, status, error)

    def record_quarantine(
        self,
        *,
        source: str,
        content_sha256: str,
        model_name: str,
        model_version: str,
        error: str,
    ) -> int:
        """Record a batch that failed validation before it was claimed; returns its id.

        Creates the batch as `quarantined`, or marks the existing one so (unless it is `done`).
        """
        _check_sha256(content_sha256)
        _check_text(source=source, model_name=model_name, model_version=model_version)
        now = _utcnow()
        key = (
            (batches_table.c.content_sha256 == content_sha256)
            & (batches_table.c.model_name == model_name)
            & (batches_table.c.model_version == model_version)
        )
        with self._transaction(f"quarantining batch {source}", write=True) as conn:
            batch_id = conn.scalar(
                self._insert(batches_table)
                .values(
                    source=source,
                    content_sha256=content_sha256,
                    model_name=model_name,
                    model_version=model_version,
                    status="quarantined",
                    n_records=0,
                    n_flagged=0,
                    error=error,
                    started_at=now,
                    finished_at=now,
                )
                .on_conflict_do_nothing(index_elements=["content_sha256", "model_name", "model_version"])
                .returning(batches_table.c.id)
            )
            if batch_id is not None:
                return int(batch_id)
            conn.execute(
                sa.update(batches_table)
                .where(key & (batches_table.c.status != "done"))
                .values(status="quarantined", source=source, error=error, finished_at=now)
            )
            return int(conn.execute(sa.select(batches_table.c.id).where(key)).scalar_one())

    def find_batch(self, *, content_sha256: str, model_name: str, model_version: str) -> Batch | None:
        """The batch of this content and model version, None when there is none."""
        key = (
            (batches_table.c.content_sha256 == content_sha256)
            & (batches_table.c.model_name == model_name)
            & (batches_table.c.model_version == model_version)
        )
        with self._transaction(f"reading batch {content_sha256[:12]}") as conn:
            row = conn.execute(sa.select(batches_table).where(key)).one_or_none()
        return _batch(row) if row is not None else None

    def get_batch(self, batch_id: int) -> Batch:
        """The batch `batch_id`; StoreError if there is none."""
        with self._transaction(f"reading batch {batch_id}") as conn:
            return _batch(self._require_batch(conn, batch_id))

    def list_batches(self, *, limit: int = 100) -> list[Batch]:
        """The newest batches first."""
        stmt = sa.select(batches_table).order_by(batches_table.c.id.desc()).limit(limit)
        with self._transaction("listing batches") as conn:
            return [_batch(row) for row in conn.execute(stmt)]

    # -- anomalies --

    def list_anomalies(self, *, batch_id: int | None = None, limit: int | None = 100) -> list[Anomaly]:
        """Flagged records, newest batch first and highest score first within a batch."""
        t = anomalies_table
        stmt = sa.select(t).order_by(t.c.batch_id.desc(), t.c.score.desc(), t.c.id)
        if batch_id is not None:
            stmt = stmt.where(t.c.batch_id == batch_id)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._transaction("listing anomalies") as conn:
            return [Anomaly(**row._asdict()) for row in conn.execute(stmt)]

    # -- feedback --

    def add_feedback(self, anomaly_id: int, verdict: str, note: str | None = None) -> int:
        """Record a verdict (`true_positive` | `false_positive`) on an anomaly; returns its id.

        One verdict per anomaly: a second one replaces the first (same id, new verdict, note
        and time); `verdict_of` tells what it was before."""
        if verdict not in VERDICTS:
            raise ConfigError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        f = feedback_table
        values = {"verdict": verdict, "note": note, "created_at": _utcnow()}
        with self._transaction(f"adding feedback on anomaly {anomaly_id}", write=True) as conn:
            found = conn.scalar(sa.select(anomalies_table.c.id).where(anomalies_table.c.id == anomaly_id))
            if found is None:
                raise StoreError(f"anomaly {anomaly_id} does not exist in {self.url}")
            earlier = conn.scalar(sa.select(sa.func.min(f.c.id)).where(f.c.anomaly_id == anomaly_id))
            if earlier is not None:
                conn.execute(sa.update(f).where(f.c.id == earlier).values(**values))
                return int(earlier)
            stmt = sa.insert(f).values(anomaly_id=anomaly_id, **values).returning(f.c.id)
            return int(conn.execute(stmt).scalar_one())

    def verdict_of(self, anomaly_id: int) -> str | None:
        """The verdict recorded on an anomaly, or None."""
        f = feedback_table
        with self._transaction(f"reading feedback on anomaly {anomaly_id}") as conn:
            stmt = sa.select(f.c.verdict).where(f.c.anomaly_id == anomaly_id).order_by(f.c.id).limit(1)
            return conn.scalar(stmt)

    def list_feedback(
        self, *, model_name: str | None = None, verdict: str | None = None
    ) -> list[FeedbackRow]:
        """Verdicts, oldest first, each with its anomaly's score, threshold and model."""
        a = anomalies_table
        stmt = (
            sa.select(
                feedback_table.c.id,
                feedback_table.c.anomaly_id,
                feedback_table.c.verdict,
                feedback_table.c.note,
                feedback_table.c.created_at,
                a.c.batch_id,
                a.c.record_key,
                a.c.score,
                a.c.threshold,
                a.c.p_value,
                a.c.model_name,
                a.c.model_version,
            )
            .join(a, a.c.id == feedback_table.c.anomaly_id)
            .order_by(feedback_table.c.id)
        )
        if model_name is not None:
            stmt = stmt.where(a.c.model_name == model_name)
        if verdict is not None:
            stmt = stmt.where(feedback_table.c.verdict == verdict)
        with self._transaction("listing feedback") as conn:
            return [FeedbackRow(**row._asdict()) for row in conn.execute(stmt)]

    # -- drift --

    def record_drift_report(
        self,
        batch_id: int,
        *,
        drift_detected: bool,
        drifted_share: float,
        details: Mapping[str, Any],
        html_path: str,
        json_path: str,
    ) -> int:
        """Record the drift report of a batch (`details`: per-column results); returns its id.

        A batch has one drift report: recording another (two processes scored the batch at
        once, or monitoring ran again) replaces it and keeps its id.
        """
        if not 0.0 <= float(drifted_share) <= 1.0:  # also refuses NaN
            raise ConfigError(f"drifted_share must be in [0, 1], got {drifted_share}")
        values = {
            "batch_id": batch_id,
            "drift_detected": bool(drift_detected),
            "drifted_share": float(drifted_share),
            "details": _jsonable(details, "drift details"),
            "html_path": str(html_path),
            "json_path": str(json_path),
            "created_at": _utcnow(),
        }
        with self._transaction(f"recording drift of batch {batch_id}", write=True) as conn:
            self._require_batch(conn, batch_id)
            ins = self._insert(drift_reports_table).values(values)
            stmt = ins.on_conflict_do_update(
                index_elements=["batch_id"],
                set_={k: ins.excluded[k] for k in values if k != "batch_id"},
            ).returning(drift_reports_table.c.id)
            return int(conn.execute(stmt).scalar_one())

    def list_drift_reports(
        self, *, model_name: str | None = None, limit: int | None = 100
    ) -> list[DriftReportRow]:
        """Drift reports, newest first, each with its batch's model (`limit` None: all)."""
        d = drift_reports_table
        stmt = (
            sa.select(*d.c, batches_table.c.model_name, batches_table.c.model_version)
            .join(batches_table, batches_table.c.id == d.c.batch_id)
            .order_by(d.c.id.desc())
            .limit(limit)
        )
        if model_name is not None:
            stmt = stmt.where(batches_table.c.model_name == model_name)
        with self._transaction("listing drift reports") as conn:
            return [DriftReportRow(**row._asdict()) for row in conn.execute(stmt)]

    # -- alerts --

    def record_alert(
        self,
        batch_id: int,
        target: str,
        *,
        status: str,
        error: str | None,
        payload: Mapping[str, Any],
    ) -> None:
        """Record one delivery attempt of a batch's alert to `target` (attempts += 1).

        `target` is stored as given: pass an identifier without secrets, not a full Apprise URL.
        """
        if status not in ALERT_STATUSES:
            raise ConfigError(f"alert status must be one of {', '.join(ALERT_STATUSES)}, got {status!r}")
        now = _utcnow()
        with self._transaction(f"recording alert of batch {batch_id}", write=True) as conn:
            self._require_batch(conn, batch_id)
            ins = self._insert(alerts_table).values(
                batch_id=batch_id,
                target=target,
                status=status,
                attempts=1,
                last_error=error,
                payload=_jsonable(payload, "alert payload"),
                created_at=now,
                updated_at=now,
            )
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["batch_id", "target"],
                    set_={
                        "status": ins.excluded.status,
                        "attempts": alerts_table.c.attempts + 1,
                        "last_error": ins.excluded.last_error,
                        "payload": ins.excluded.payload,
                        "updated_at": ins.excluded.updated_at,
                    },
                )
            )

    def alerts_to_retry(self) -> list[AlertRow]:
        """Alerts whose last attempt failed, least recently tried first."""
        stmt = (
            sa.select(alerts_table)
            .where(alerts_table.c.status == "failed")
            .order_by(alerts_table.c.updated_at, alerts_table.c.id)
        )
        with self._transaction("listing alerts to retry") as conn:
            return [AlertRow(**row._asdict()) for row in conn.execute(stmt)]

    def alert_sent(self, batch_id: int, target: str) -> bool:
        """Whether the alert of `batch_id` already reached `target`."""
        stmt = sa.select(alerts_table.c.status).where(
            (alerts_table.c.batch_id == batch_id) & (alerts_table.c.target == target)
        )
        with self._transaction(f"reading alert of batch {batch_id}") as conn:
            return conn.scalar(stmt) == "sent"

    def recent_alert_times(self, model_name: str, since: datetime) -> list[datetime]:
        """When alerts of `model_name`'s batches were sent since `since` (for rate limits)."""
        stmt = (
            sa.select(alerts_table.c.updated_at)
            .join(batches_table, batches_table.c.id == alerts_table.c.batch_id)
            .where(
                (batches_table.c.model_name == model_name)
                & (alerts_table.c.status == "sent")
                & (alerts_table.c.updated_at >= _as_utc(since))
            )
            .order_by(alerts_table.c.updated_at)
        )
        with self._transaction(f"reading recent alerts of {model_name}") as conn:
            return list(conn.scalars(stmt))

    # -- plumbing --

    @contextmanager
    def _transaction(self, action: str, *, write: bool = False) -> Iterator[Connection]:
        """A connection in a transaction; SQLAlchemy errors become StoreError."""
        try:
            conn = self._engine.connect()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"cannot connect to {self.url}: {_reason(exc)}") from exc
        try:
            with conn:
                if write:
                    conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    yield conn
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"{action} failed on {self.url}: {_reason(exc)}") from exc

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """INSERT with the dialect's ON CONFLICT clauses."""
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _require_batch(self, conn: Connection, batch_id: int) -> sa.Row[Any]:
        row = conn.execute(sa.select(batches_table).where(batches_table.c.id == batch_id)).one_or_none()
        if row is None:
            raise StoreError(f"batch {batch_id} does not exist in {self.url}")
        return row


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile. Tens of thousands of row objects (acyclic, freed
    by reference counting) otherwise set off full collections that walk every object torch,
    pandas and SQLAlchemy hold: 0.24 s of 0.58 s when writing 12.5k rows."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- engine ----------------------------------------------------------------------------------


def create_store_engine(url: str) -> Engine:
    """A SQLAlchemy engine for the anomaly database (SQLite or PostgreSQL only).

    SQLite: the parent folder is created, and every connection gets WAL mode, a busy timeout,
    foreign keys, and SQLAlchemy-controlled transactions (`BEGIN IMMEDIATE` for writes, so that
    concurrent writers queue instead of failing).
    """
    safe = _safe_url(url)
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise StoreError(f"invalid database URL {safe!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {safe!r}: use sqlite:/// or postgresql+psycopg://")
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        _make_sqlite_folder(parsed)
    elif "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = _PG_CONNECT_TIMEOUT_S
    try:
        engine = sa.create_engine(
            parsed,
            json_serializer=_dumps,
            pool_pre_ping=backend == "postgresql",
            connect_args=connect_args,
        )
    except (ImportError, sa.exc.SQLAlchemyError) as exc:
        raise StoreError(f"cannot use database {safe}: {exc}") from exc
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy emit BEGIN (see _sqlite_on_begin) instead of the sqlite3 module, whose
    # legacy mode starts transactions late and never for DDL.
    dbapi_connection.isolation_level = None
    # Two processes switching a new file to WAL at once: SQLite answers one of them "database is
    # locked" at once, without waiting out the busy timeout (it would deadlock), so retry here.
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            _sqlite_setup(dbapi_connection)
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_setup(dbapi_connection: sqlite3.Connection) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY when
    # another writer got in between (the busy timeout does not apply); taking the write lock
    # up front makes writers queue instead.
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _make_sqlite_folder(url: sa.URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


@functools.cache
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def _current_heads(conn: Connection) -> set[str]:
    """The schema revisions stamped in the database (no MigrationContext: it logs at INFO)."""
    if not sa.inspect(conn).has_table(_VERSION_TABLE):
        return set()
    return set(conn.scalars(sa.select(sa.column("version_num")).select_from(sa.table(_VERSION_TABLE))))


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's message, without the SQL statement and parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return " ".join(text.split()) or type(exc).__name__


# --- values that go in -----------------------------------------------------------------------

_ANOMALY_KEYS = ("record_key", "timestamp", "score", "threshold", "p_value", "details")


def _anomaly_values(index: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert one anomaly mapping into column values."""
    missing = [k for k in ("record_key", "score", "threshold") if k not in row]
    if missing:
        raise ConfigError(f"anomaly {index}: missing {', '.join(missing)}")
    key = str(row["record_key"])
    unknown = sorted(set(row) - set(_ANOMALY_KEYS))
    if unknown:
        msg = (
            f"anomaly {index} ({key}): unknown keys {', '.join(unknown)}; expected {', '.join(_ANOMALY_KEYS)}"
        )
        raise ConfigError(msg)
    if not key:
        raise ConfigError(f"anomaly {index}: empty record_key")
    values: dict[str, Any] = {"record_key": key}
    for name in ("score", "threshold"):
        value = float(row[name])
        if math.isnan(value):
            raise ConfigError(f"anomaly {index} ({key}): {name} is NaN")
        values[name] = value
    p_value = row.get("p_value")
    values["p_value"] = None if p_value is None or math.isnan(float(p_value)) else float(p_value)
    try:
        values["timestamp"] = _as_utc(row.get("timestamp"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"anomaly {index} ({key}): bad timestamp: {exc}") from exc
    details = row.get("details")
    if details is not None and not isinstance(details, Mapping):
        raise ConfigError(f"anomaly {index} ({key}): details must be a mapping, got {details!r}")
    values["details"] = details if details is not None else {}  # the engine's serialiser: `_dumps`
    return values


def _as_utc(value: Any) -> datetime | None:
    """A timezone-aware UTC datetime from a datetime, ISO string, pandas or numpy time.

    Naive values are taken as UTC; None and NaT give None.
    """
    if value is None or value != value:  # NaT is not equal to itself
        return None
    if type(value) is datetime and value.tzinfo is UTC:  # the common case, kept cheap
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    elif getattr(getattr(value, "dtype", None), "kind", None) == "M":  # numpy.datetime64
        value = value.astype("datetime64[us]").item()
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _jsonable(value: Any, what: str) -> Any:
    """`value` as plain JSON types: numpy values unwrapped, NaN and infinities as null."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, what) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, what) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _jsonable(value.tolist(), what)
    raise ConfigError(f"{what}: cannot store a {type(value).__name__} as JSON")


def _dumps(value: Any) -> str:
    """The engine's JSON serialiser; values are usually clean already (see `_jsonable`)."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(_jsonable(value, "JSON column"), allow_nan=False)


def _check_sha256(value: str) -> None:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ConfigError(f"content_sha256 must be 64 lowercase hex digits, got {value!r}")


def _check_text(**values: str) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")


def _batch(row: sa.Row[Any]) -> Batch:
    return Batch(**row._asdict())


def _utcnow() -> datetime:
    return datetime.now(UTC)
