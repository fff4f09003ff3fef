"""The anomaly database: batch ledger, flagged records, drift reports, feedback and alerts.

The only aemon package that imports SQLAlchemy (and Alembic, which manages the schema, with
aemon/migrations). Nothing SQLAlchemy-shaped leaves it: methods take and return plain values
and frozen dataclasses (`records`), and database errors come out as `StoreError`.

- `anomaly_store`: `AnomalyStore`, the operations, each in one transaction;
- `records`: the frozen dataclasses it returns (no SQLAlchemy);
- `values`: checks and conversions of what goes in (no SQLAlchemy);
- `schema`: the tables; `engine`: connections, SQLite pragmas and Alembic's configuration.

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

from aemon.store.anomaly_store import AnomalyStore
from aemon.store.engine import MIGRATION_LOCK_KEY, WRITE_OPTION, create_store_engine
from aemon.store.records import (
    ALERT_STATUSES,
    BATCH_STATUSES,
    VERDICTS,
    AlertRow,
    Anomaly,
    Batch,
    DriftReportRow,
    FeedbackRow,
)
from aemon.store.schema import metadata

__all__ = [
    "ALERT_STATUSES",
    "BATCH_STATUSES",
    "MIGRATION_LOCK_KEY",
    "VERDICTS",
    "WRITE_OPTION",
    "AlertRow",
    "Anomaly",
    "AnomalyStore",
    "Batch",
    "DriftReportRow",
    "FeedbackRow",
    "create_store_engine",
    "metadata",
]
