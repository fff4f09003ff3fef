"""Batches: how a file or folder of new data becomes rows in the anomaly database.

A batch is identified by the sha256 of its content and the model version that scores it, so
scoring the same content again with the same model changes nothing. A batch that cannot be
read or does not match the model's schema is *quarantined*: recorded with its error in the
`batches` table and moved to `<inbox>/quarantine/`; good batches move to `<inbox>/done/`.
Files are never deleted.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aemon.errors import DataError

if TYPE_CHECKING:
    from aemon.detector import Detector, ScoreResult
    from aemon.store import AnomalyStore

log = logging.getLogger(__name__)

DONE_DIR, QUARANTINE_DIR = "done", "quarantine"


@dataclass
class BatchOutcome:
    """What happened to one batch. `status`: done | skipped (already scored by this model
    version) | quarantined (bad input, see `error`)."""

    source: str
    status: str
    model_name: str
    model_version: str
    content_sha256: str
    batch_id: int | None = None
    n_records: int = 0
    n_flagged: int = 0
    error: str | None = None
    moved_to: str | None = None
    drift_detected: bool | None = None  # None: no drift report
    report_path: str | None = None
    flag_rate: str | None = None  # the flag-rate check's message
    flag_rate_broken: bool | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)  # one per target tried
    result: ScoreResult | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the in-memory scores."""
        return {k: v for k, v in self.__dict__.items() if k != "result"}


def batch_sha256(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's sorted (relative path, file sha256) list."""
    if not path.exists():
        raise DataError("batch not found", source=path)
    if path.is_file():
        return _file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(_file_sha256(file).encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_new_batches(inbox: Path) -> list[Path]:
    """Files and folders directly in `inbox`, oldest first, leaving out done/, quarantine/ and
    hidden names (files still being written should be written under a hidden name, then moved)."""
    if not inbox.is_dir():
        raise DataError("inbox folder not found", source=inbox)
    entries = [
        p
        for p in inbox.iterdir()
        if p.name not in (DONE_DIR, QUARANTINE_DIR) and not p.name.startswith((".", "_"))
    ]
    # lstat: a broken link is listed (and fails with its name) instead of failing the listing.
    return sorted(entries, key=lambda p: (p.lstat().st_mtime, p.name))


def move_batch(path: Path, inbox: Path, where: str) -> Path:
    """Move a processed batch to `<inbox>/<where>/`, never overwriting: a name that exists
    gets a time suffix."""
    target_dir = inbox / where
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / path.name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = target_dir / f"{path.stem}.{stamp}{''.join(path.suffixes)}"
    shutil.move(str(path), target)
    return target


def anomaly_rows(
    result: ScoreResult, error_map_dir: Path | None = None, chunk: int = 5_000
) -> Iterator[dict[str, Any]]:
    """One row per flagged record for `AnomalyStore.complete_batch`, built `chunk` at a time
    so a batch with many flagged records is never held twice in memory.

    Time-series rows carry their event number and per-column errors; image rows carry the
    path of their error-map PNG (written under `error_map_dir` when given).
    """
    flagged = np.flatnonzero(result.is_anomaly)
    event_ids = result.event_ids() if result.events is not None else None
    for start in range(0, len(flagged), chunk):
        idx = flagged[start : start + chunk]
        scores, p_values = result.scores[idx].tolist(), result.p_values_at(idx).tolist()
        keys = result.keys_at(idx)
        times: list[Any] = [None] * len(idx)
        if result.timestamps is not None:
            times = pd.DatetimeIndex(result.timestamps[idx]).tz_localize("UTC").to_pydatetime().tolist()
        events = event_ids[idx].tolist() if event_ids is not None else None
        col_errs = result.column_errors[idx].tolist() if result.column_errors is not None else None
        for n, i in enumerate(idx.tolist()):
            details: dict[str, Any] = {}
            if events is not None:
                details["event_id"] = events[n]
            if col_errs is not None:
                details["column_errors"] = dict(zip(result.columns, col_errs[n], strict=True))
            if result.error_maps is not None and error_map_dir is not None:
                details["error_map"] = str(save_error_map(result.error_maps[i], error_map_dir, keys[n]))
            yield {
                "record_key": keys[n],
                "timestamp": times[n],
                "score": scores[n],
                "threshold": result.threshold,
                "p_value": p_values[n],
                "details": details,
            }


def save_error_map(error_map: np.ndarray, folder: Path, key: str) -> Path:
    """A per-pixel error map as an 8-bit PNG, scaled to its own maximum (brighter = worse)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    peak = float(error_map.max())
    scaled = (error_map / peak * 255).astype(np.uint8) if peak > 0 else np.zeros(error_map.shape, np.uint8)
    path = folder / (key.replace("/", "__").replace(":", "_") + ".png")
    Image.fromarray(scaled).save(path)
    return path


def score_batch_into_store(
    store: AnomalyStore,
    detector: Detector,
    path: Path,
    *,
    model_name: str,
    model_version: str,
    error_map_root: Path | None = None,
) -> BatchOutcome:
    """Score one batch and write its flagged records, exactly once per content and model.

    Bad input (DataError, SchemaError) quarantines the batch in the database and returns; any
    other error marks it failed and is raised, so the caller can retry.
    """
    source = str(path)
    sha = batch_sha256(path)
    outcome = BatchOutcome(source, "skipped", model_name, model_version, sha)
    batch = store.claim_batch(
        source=source, content_sha256=sha, model_name=model_name, model_version=model_version
    )
    if batch is None:
        log.info("%s: already scored by %s/%s, skipped", source, model_name, model_version)
        return outcome
    outcome.batch_id = batch.id
    try:
        result = detector.score(path)
    except DataError as exc:
        store.fail_batch(batch.id, str(exc), quarantined=True)
        log.warning("%s quarantined: %s", source, exc)
        outcome.status, outcome.error = "quarantined", str(exc)
        return outcome
    except Exception as exc:
        store.fail_batch(batch.id, f"{type(exc).__name__}: {exc}")
        raise
    maps = error_map_root / model_name / str(batch.id) / "error_maps" if error_map_root else None
    rows = anomaly_rows(result, maps)
    store.complete_batch(batch.id, rows, n_records=result.n_records)
    outcome.status, outcome.result = "done", result
    outcome.n_records, outcome.n_flagged = result.n_records, result.n_flagged
    log.info("%s: %d of %d records flagged", source, result.n_flagged, result.n_records)
    return outcome
