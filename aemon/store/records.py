"""The plain values the anomaly database hands out: frozen dataclasses, no SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

BATCH_STATUSES = ("running", "done", "failed", "quarantined")
VERDICTS = ("true_positive", "false_positive")
ALERT_STATUSES = ("sent", "failed")


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
    # When its drift report and alert were done; None while a `done` batch still needs them
    # (its run stopped after the rows were committed): the next run of its content does them.
    monitored_at: datetime | None = None


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
