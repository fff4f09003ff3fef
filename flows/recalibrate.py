"""The `recalibrate` flow: turn false-positive feedback into a new model version.

load champion -> read feedback on its flagged records -> raise the threshold above the false
positives (keeping confirmed true positives flagged) -> register the new version (same
weights) through the quality gate like any training run.
"""

from __future__ import annotations

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from aemon import registry
from aemon.calibration import threshold_from_feedback
from aemon.errors import CalibrationError
from aemon.registry import RegisteredVersion
from aemon.store import AnomalyStore
from flows.common import logger, retry_on_io


@task(retries=2, retry_delay_seconds=2, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def read_feedback(name: str, version: str) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the records people marked false / true positive for this model version."""
    with AnomalyStore() as store:
        rows = [r for r in store.list_feedback(model_name=name) if r.model_version == version]
    fp = np.array([r.score for r in rows if r.verdict == "false_positive"])
    tp = np.array([r.score for r in rows if r.verdict == "true_positive"])
    logger().info("%s/%s: %d false and %d true positives marked", name, version, len(fp), len(tp))
    return fp, tp


@flow(name="recalibrate")
def recalibrate(name: str, promote: bool = False) -> RegisteredVersion:
    """New version of `name` whose threshold clears the champion's false-positive feedback."""
    detector, ref = registry.load_detector(name)
    fp, tp = read_feedback(ref.name, ref.version)
    if len(fp) == 0:
        raise CalibrationError(
            f"no false-positive feedback on {ref}: mark some with "
            "`aemon feedback ID --verdict false_positive` first"
        )
    threshold = threshold_from_feedback(detector.threshold_, fp, tp)
    promised = detector.threshold_info_.promised_fpr
    if promised is not None:  # a higher threshold keeps the old promise
        threshold.params["target_fpr"] = promised
    if threshold.value == detector.threshold_:
        raise CalibrationError(
            f"every false positive of {ref} scores at or above a confirmed true positive; "
            "raising the threshold would lose true positives, so nothing changed"
        )
    logger().info("%s: threshold %.6g -> %.6g", ref, detector.threshold_, threshold.value)
    return registry.log_training(
        detector.with_threshold(threshold),
        name=ref.name,
        data_source=f"recalibrated from {ref.name}/{ref.version} with {len(fp) + len(tp)} verdicts",
        promote=promote,
        drift_reference=registry.load_drift_reference(ref),
    )
