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
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aemon import config
from aemon.data.source import content_state, file_sha256, folder_sha256
from aemon.errors import MAX_PROBLEM_CHARS, DataError, safe_text

if TYPE_CHECKING:
    from aemon.detector import Detector
    from aemon.results import ScoreResult
    from aemon.store import AnomalyStore
    from aemon.store.records import Batch

log = logging.getLogger(__name__)

DONE_DIR, QUARANTINE_DIR = "done", "quarantine"


@dataclass
class BatchOutcome:
    """What happened to one batch. `status`: done | skipped (already scored and monitored by
    this model version) | quarantined (bad input, see `error`) | deferred (it changed while it
    was read, or another live run holds its batch: nothing recorded, left where it is)."""

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
    # Problems after the records were written (no drift report...): shown once with the batch.
    warnings: list[str] = field(default_factory=list)
    # Rows written by an earlier run that stopped before its drift report and alert: this run
    # scored the batch again in memory (no rows written) to finish monitoring.
    resumed: bool = False
    result: ScoreResult | None = None
    read_state: tuple[tuple[str, int, int], ...] = ()  # `content_state` when it was read

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the in-memory scores."""
        return {k: v for k, v in self.__dict__.items() if k not in ("result", "read_state")}


def batch_sha256(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's sorted (relative path, file sha256) list:
    the hash that reading a batch computes as it goes, for a batch that could not be read."""
    if not path.exists():
        raise DataError("batch not found", source=path)
    if path.is_file():
        return file_sha256(path)
    return folder_sha256(
        (p.relative_to(path).as_posix(), file_sha256(p)) for p in path.rglob("*") if p.is_file()
    )


def list_new_batches(inbox: Path, settle_seconds: float | None = None) -> list[Path]:
    """Files and folders directly in `inbox` that have settled, oldest first, leaving out done/,
    quarantine/ and hidden names.

    Settled: no file of the entry changed (size or modification time) in the last
    `settle_seconds` (default `AEMON_SETTLE_SECONDS`, 2 s), so a file still being written is
    left for a later run. Writing under a hidden name and renaming when complete stays the
    surest way; the settle interval covers producers that do not.
    """
    if not inbox.is_dir():
        raise DataError("inbox folder not found", source=inbox)
    settle_ns = int(1e9 * (config.settle_seconds() if settle_seconds is None else settle_seconds))
    now_ns = time.time_ns()
    entries = []
    for p in inbox.iterdir():
        if p.name in (DONE_DIR, QUARANTINE_DIR) or p.name.startswith((".", "_")):
            continue
        changed_ns = max((mtime for _, _, mtime in content_state(p)), default=None)
        if settle_ns and changed_ns is not None and now_ns - changed_ns < settle_ns:
            log.info("%s changed %.1f s ago: left for a later run", p, (now_ns - changed_ns) / 1e9)
            continue
        entries.append(p)
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


def escaping_link(path: Path, inbox: Path) -> str | None:
    """Where `path` leads when it is a symbolic link (or a folder holding one) whose target
    lies outside `inbox`; None when everything stays inside."""
    root = Path(os.path.realpath(inbox))
    links = [path] if path.is_symlink() else []
    if not links and path.is_dir():
        links = [p for p in path.rglob("*") if p.is_symlink()]
    for link in links:
        target = Path(os.path.realpath(link))
        if target != root and root not in target.parents:
            return os.readlink(link)
    return None


def _quarantine_link(
    store: AnomalyStore, path: Path, target: str, *, model_name: str, model_version: str
) -> BatchOutcome:
    """Record a link out of the inbox as quarantined, identified by where it points (its
    target is never read, so it has no content hash)."""
    sha = hashlib.sha256(b"symlink\0" + os.fsencode(target)).hexdigest()
    error = f"{safe_text(path)}: a symbolic link to {safe_text(target, 200)!r}, outside the inbox: not read"
    batch_id = store.record_quarantine(
        source=str(path), content_sha256=sha, model_name=model_name, model_version=model_version, error=error
    )
    log.info("%s", error)  # the caller reports it
    return BatchOutcome(
        str(path), "quarantined", model_name, model_version, sha, batch_id=batch_id, error=error
    )


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
    inbox: Path | None = None,
) -> BatchOutcome:
    """Score one batch and write its flagged records, exactly once per content and model.

    Bad input (DataError, SchemaError) quarantines the batch in the database and returns; any
    other error marks it failed and is raised, so the caller can retry. Content quarantined
    before comes back `quarantined` again (with the first error), never `skipped`. With
    `inbox`, a symbolic link that leads outside it is quarantined without reading its target.
    """
    source = str(path)
    if inbox is not None and (target := escaping_link(path, inbox)) is not None:
        return _quarantine_link(store, path, target, model_name=model_name, model_version=model_version)
    if not (before := content_state(path)):
        if inbox is not None and not path.is_symlink():  # another worker filed it since the listing
            return _deferred(source, model_name, model_version, "was moved away (by another run?)")
        raise DataError("batch not found", source=path)
    # One read gives the records and the content hash; a batch that cannot be read is hashed
    # on its own, to be recorded as quarantined.
    try:
        batch, problem = detector.read(path), None
    except DataError as exc:
        batch, problem = None, exc
    if (after := content_state(path)) != before:
        # A writer was at work: what was read may be half a file (even a bad one, cut
        # mid-line). Record nothing; a later run reads it once it has settled.
        why = "was moved away" if not after else "changed (still being written?)"
        return _deferred(source, model_name, model_version, f"{why} while it was read")
    sha = batch.content_sha256 if batch is not None and batch.content_sha256 else batch_sha256(path)
    outcome = BatchOutcome(source, "skipped", model_name, model_version, sha, read_state=before)
    claimed = store.claim_batch(
        source=source, content_sha256=sha, model_name=model_name, model_version=model_version
    )
    if claimed is None:
        return _not_claimed(store, outcome, detector, batch)
    outcome.batch_id = claimed.id
    config.fault_pause("after-claim")
    if problem is not None:
        store.fail_batch(claimed.id, str(problem), quarantined=True)
        log.info("quarantined: %s", problem)  # the caller reports it; the error names the file
        outcome.status, outcome.error = "quarantined", str(problem)
        return outcome
    try:
        result = detector.score(batch)  # type: ignore[arg-type]  # read, as problem is None
    except DataError as exc:  # valid to read, not to score (a series shorter than the window)
        error = str(exc) if exc.source else str(DataError(exc.problem, source=path, record=exc.record))
        store.fail_batch(claimed.id, error, quarantined=True)
        log.info("quarantined: %s", error)  # the caller reports it; the error names the file
        outcome.status, outcome.error = "quarantined", error
        return outcome
    except Exception as exc:
        store.fail_batch(claimed.id, safe_text(f"{type(exc).__name__}: {exc}", MAX_PROBLEM_CHARS))
        raise
    maps = None
    if error_map_root is not None:
        maps = error_map_root / config.check_model_name(model_name) / str(claimed.id) / "error_maps"
    rows = anomaly_rows(result, maps)
    store.complete_batch(
        claimed.id, rows, n_records=result.n_records, on_progress=lambda _: config.fault_pause("during-write")
    )
    config.fault_pause("after-write")
    outcome.status, outcome.result = "done", result
    outcome.n_records, outcome.n_flagged = result.n_records, result.n_flagged
    log.info("%s: %d of %d records flagged", source, result.n_flagged, result.n_records)
    return outcome


def _deferred(source: str, model_name: str, model_version: str, why: str) -> BatchOutcome:
    """Nothing recorded, the file left where it is: a later run (or the run that holds the
    batch) takes it."""
    error = f"{safe_text(source)} {why}: nothing recorded, left for a later run"
    log.info("%s", error)  # the caller reports it
    return BatchOutcome(source, "deferred", model_name, model_version, "", error=error)


def _resume_monitoring(
    outcome: BatchOutcome, detector: Detector, batch: Any, previous: Batch
) -> BatchOutcome:
    """The batch's rows were committed by a run that stopped before its drift report and alert
    were done: score it again in memory (same version, same scores; no row is written again)
    so that the caller can finish monitoring."""
    result = detector.score(batch)
    outcome.status, outcome.result, outcome.resumed = "done", result, True
    outcome.n_records, outcome.n_flagged = previous.n_records, previous.n_flagged
    log.info("%s: rows already written; monitoring resumed", outcome.source)
    return outcome


def _not_claimed(store: AnomalyStore, outcome: BatchOutcome, detector: Detector, batch: Any) -> BatchOutcome:
    """The batch exists and was not claimed: quarantined before, held by another live run,
    done but not monitored (monitoring resumes here), or done: skipped."""
    previous = store.find_batch(
        content_sha256=outcome.content_sha256,
        model_name=outcome.model_name,
        model_version=outcome.model_version,
    )
    if previous is not None and previous.status == "quarantined":
        # The same bad content under another name: quarantined again, never "done".
        outcome.batch_id, outcome.status = previous.id, "quarantined"
        outcome.error = (
            f"{safe_text(outcome.source)}: this content was quarantined before "
            f"(batch {previous.id}): {previous.error}"
        )
        log.info("%s", outcome.error)  # the caller reports it
        return outcome
    if previous is not None and previous.status in ("running", "failed"):
        return _deferred(
            outcome.source,
            outcome.model_name,
            outcome.model_version,
            f"is being scored by another run (batch {previous.id})",
        )
    if previous is not None:
        outcome.batch_id = previous.id  # the batch that holds this content's results
        if previous.status == "done" and previous.monitored_at is None and batch is not None:
            if not store.hold_batch(previous.id):
                why = f"is being monitored by another run (batch {previous.id})"
                return _deferred(outcome.source, outcome.model_name, outcome.model_version, why)
            return _resume_monitoring(outcome, detector, batch, previous)
    log.info(
        "%s: already scored by %s/%s, skipped", outcome.source, outcome.model_name, outcome.model_version
    )
    return outcome
