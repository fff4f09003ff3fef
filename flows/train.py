"""The `train` flow: load -> split -> fit -> calibrate -> evaluate -> register -> promote.

Runs with no Prefect server and no configuration (Prefect's temporary local API, state under
`<AEMON_HOME>/prefect`); the same flow runs against a server when `PREFECT_API_URL` is set.

Data split: the last `holdout_fraction` of a series (a seeded random, label-stratified share
of images) is held out from `fit`. The detector trains and calibrates its threshold on the
rest (it keeps its own calibration slice apart from training), and the held-out part scores
the new version and the current champion alike for the quality gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aemon import config, drift, registry
from aemon.detector import Detector
from aemon.errors import ConfigError, DataError
from aemon.evaluation import evaluate_detector
from aemon.modalities import adapter_for, infer_adapter
from aemon.registry import RegisteredVersion
from flows.common import logger, retry_on_io
from flows.orchestration import NO_CACHE, flow, task


@dataclass
class Reference:
    """Reference data in memory: a series frame, or images (N, H, W, C) float32 in [0, 1]."""

    modality: str
    data: pd.DataFrame | np.ndarray
    labels: np.ndarray | None  # 0/1 per row or image, 1 = anomaly
    source: str

    def __len__(self) -> int:
        return len(self.data)

    def take(self, index: np.ndarray | slice) -> Reference:
        data = (
            self.data.iloc[index].reset_index(drop=True)
            if isinstance(self.data, pd.DataFrame)
            else self.data[index]
        )
        labels = self.labels[index] if self.labels is not None else None
        return Reference(self.modality, data, labels, self.source)


def _read_labels(path: str, n: int, keys: list[str] | None) -> np.ndarray:
    """A CSV with a 0/1 column `label`; for images an optional `key` column matches rows to
    image paths (relative to the folder), else rows follow the sorted image keys."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read labels: {exc}", source=path) from exc
    if "label" not in frame.columns:
        raise DataError(f"labels need a column 'label', got {list(frame.columns)}", source=path)
    if keys is not None and "key" in frame.columns:
        by_key = dict(zip(frame["key"].astype(str), frame["label"], strict=True))
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise DataError(f"no label for {len(missing)} image(s), e.g. {missing[0]!r}", source=path)
        values = pd.Series([by_key[k] for k in keys])
    else:
        values = frame["label"]
    if len(values) != n:
        raise DataError(f"labels have {len(values)} rows, the data has {n} records", source=path)
    bad = ~values.isin([0, 1])
    if bad.any():
        raise DataError(
            f"labels must be 0 or 1, got {values[bad].iloc[0]!r}",
            source=path,
            record=int(np.flatnonzero(bad.to_numpy())[0]),
        )
    return values.to_numpy(dtype=np.int64)


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def load_reference(data: str, modality: str | None = None, labels: str | None = None) -> Reference:
    """Read the reference data (and labels) into memory."""
    path = Path(data)
    if not path.exists():
        raise DataError("file or folder not found", source=path)
    if modality is not None:
        adapter = adapter_for(modality)
    else:
        try:
            adapter = infer_adapter(path)
        except DataError:
            raise DataError("cannot tell the modality; pass --modality", source=path) from None
    frame, keys = adapter.read_reference(path)
    y = _read_labels(labels, len(frame), keys) if labels is not None else None
    logger().info("loaded %d %s records from %s", len(frame), adapter.name, data)
    return Reference(adapter.name, frame, y, str(data))


@task(cache_policy=NO_CACHE)
def split_holdout(reference: Reference, fraction: float, seed: int = 0) -> tuple[Reference, Reference | None]:
    """Hold out the series' last rows, or a seeded label-stratified share of the images."""
    if not 0 <= fraction < 0.5:
        raise ConfigError(f"holdout fraction must be in [0, 0.5), got {fraction}")
    n = len(reference)
    n_hold = int(n * fraction)
    if n_hold == 0:
        return reference, None
    if adapter_for(reference.modality).ordered:  # in time order: hold out the last records
        return reference.take(slice(0, n - n_hold)), reference.take(slice(n - n_hold, n))
    rng = np.random.default_rng(seed)
    y = reference.labels if reference.labels is not None else np.zeros(n, dtype=np.int64)
    held = np.concatenate(
        [rng.permutation(np.flatnonzero(y == c))[: round(fraction * int((y == c).sum()))] for c in (0, 1)]
    )
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    return reference.take(np.flatnonzero(~mask)), reference.take(np.flatnonzero(mask))


@task(cache_policy=NO_CACHE)
def fit_detector(reference: Reference, settings: dict[str, Any]) -> Detector:
    """Train the autoencoder and calibrate its threshold (`Detector.fit`; one task)."""
    unknown = sorted(set(settings) - (set(Detector().get_params()) - {"modality"}))
    if unknown:
        raise ConfigError(f"unknown Detector options {unknown}")
    detector = Detector(modality=reference.modality, **settings)
    return detector.fit(reference.data, reference.labels)


@task(cache_policy=NO_CACHE)
def report_calibration(detector: Detector) -> dict[str, float]:
    """The calibrated threshold and its false-positive rate on the calibration slice."""
    thr = detector.threshold_info_
    log = logger()
    log.info("threshold %.6g (%s), calibration FPR %.4f", thr.value, thr.method, detector.calibration_fpr_)
    promise = thr.promised_fpr
    if promise is not None and detector.calibration_fpr_ > registry.FPR_SLACK * promise:
        log.warning("calibration FPR %.4f is well above the target %.4f", detector.calibration_fpr_, promise)
    return {"threshold": thr.value, "calibration_fpr": detector.calibration_fpr_}


@task(cache_policy=NO_CACHE)
def evaluate_holdout(detector: Detector, holdout: Reference | None) -> dict[str, float]:
    """Metrics on the held-out data: FPR, and AUROC/AUPRC/F1 when it has labelled anomalies."""
    if holdout is None:
        return {}
    metrics = evaluate_detector(detector, holdout.data, holdout.labels)
    check = drift.check_holdout(detector, metrics)
    if check is not None and check.broken:
        logger().warning("%s", check.message)
    return metrics


@task(cache_policy=NO_CACHE)
def profile_reference(detector: Detector, reference: Reference) -> pd.DataFrame:
    """The drift reference sample (inputs, latent codes, scores), once per model version."""
    return drift.reference_profile(detector, reference.data)


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def register_version(
    detector: Detector,
    name: str,
    source: str,
    evaluation: dict[str, float],
    holdout: Reference | None,
    drift_reference: pd.DataFrame,
) -> RegisteredVersion:
    """Log the run and register a new version (alias `challenger`) after a load test."""
    return registry.register_detector(
        detector,
        name=name,
        data_source=source,
        evaluation=evaluation,
        reference_data=holdout.data if holdout is not None else None,
        labels=holdout.labels if holdout is not None else None,
        drift_reference=drift_reference,
    )


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def promote_version(version: RegisteredVersion, holdout: Reference | None, force: bool) -> RegisteredVersion:
    """Make the version `champion` when it passes the quality gate (or `force`)."""
    decided = registry.promote_version(
        version,
        reference_data=holdout.data if holdout is not None else None,
        labels=holdout.labels if holdout is not None else None,
        force=force,
    )
    logger().info(
        "%s/%s: %s (%s)",
        decided.name,
        decided.version,
        "champion" if decided.promoted else "not promoted",
        decided.reason,
    )
    return decided


@flow(name="train")
def train(
    data: str,
    name: str,
    modality: str | None = None,
    model: str = "auto",
    objective: str = "undercomplete",
    threshold: str = "quantile",
    target_fpr: float = 0.01,
    false_alarms: str | None = "auto",
    window: int = 64,
    latent_dim: int | None = None,
    epochs: int = 60,
    labels: str | None = None,
    promote: bool = False,
    device: str = "auto",
    seed: int = 0,
    holdout_fraction: float = config.HOLDOUT_FRACTION,
    progress: bool = False,
    options: dict[str, Any] | None = None,
) -> RegisteredVersion:
    """Train a detector on reference `data` and register it as a new version of `name`.

    `options`: further `Detector` arguments (e.g. `{"hidden": [64, 32]}`).
    """
    config.check_model_name(name)  # before minutes of training, not after
    settings = {
        "model": model,
        "objective": objective,
        "threshold": threshold,
        "target_fpr": target_fpr,
        "false_alarms": false_alarms,
        "window": window,
        "latent_dim": latent_dim,
        "epochs": epochs,
        "device": device,
        "seed": seed,
        "progress": progress,
        **(options or {}),
    }
    reference = load_reference(data, modality, labels)
    fit_part, holdout = split_holdout(reference, holdout_fraction, seed)
    detector = fit_detector(fit_part, settings)
    report_calibration(detector)
    evaluation = evaluate_holdout(detector, holdout)
    drift_reference = profile_reference(detector, fit_part)
    version = register_version(detector, name, data, evaluation, holdout, drift_reference)
    return promote_version(version, holdout, promote)
