"""Detection metrics on labelled data: what the registry logs and the quality gate compares.

Scores: higher = more anomalous. AUROC and AUPRC come from scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aemon.errors import DataError

if TYPE_CHECKING:
    from aemon.detector import Detector, Input


def evaluate_detector(
    detector: Detector, data: Input, labels: Sequence[int] | np.ndarray | None = None
) -> dict[str, float]:
    """Score held-out `data` and measure: `fpr` (share of normal records flagged), and with
    labels holding both classes `auroc`, `auprc`, `precision`, `recall`, `f1`.

    Time series: a window-based score smears an anomaly over the window around it, so normal
    points closer than `window - 1` to a labelled anomaly are left out of `fpr`.
    """
    return evaluate_result(detector, detector.score(data), labels)


def evaluate_result(detector: Detector, res: Any, labels: Any) -> dict[str, float]:
    n = res.n_records
    metrics: dict[str, float] = {"n_records": float(n), "n_flagged": float(res.n_flagged)}
    y: np.ndarray | None = None
    normal = np.ones(n, dtype=bool)
    if labels is not None:
        y = np.asarray(labels).astype(bool)
        if y.shape != (n,):
            raise DataError(f"labels must hold one value per record ({n}), got shape {y.shape}")
        normal = ~y
        reach = detector.adapter_.block_size(detector.window) - 1  # neighbours flagged with an anomaly
        if reach > 0:
            normal = ~_dilate(y, reach)
        metrics["n_anomalies"] = float(y.sum())
    metrics["n_normal"] = float(normal.sum())
    if res.events is not None:
        metrics["n_events"] = float(len(res.events))
        # Events that touch no labelled anomaly, over the time covered: the false-alarm budget's
        # terms, for the quality gate.
        spans = zip(res.events.start_index, res.events.end_index, strict=True)
        metrics["n_false_events"] = float(sum(y is None or not y[a : b + 1].any() for a, b in spans))
        stamps = res.timestamps
        if stamps is not None and len(stamps) > 1:
            metrics["span_days"] = float(pd.Timedelta(stamps[-1] - stamps[0]) / pd.Timedelta(days=1))
    if normal.any():
        metrics["fpr"] = float(res.is_anomaly[normal].mean())
    if y is not None and y.any() and (~y).any():
        from sklearn.metrics import average_precision_score, roc_auc_score

        metrics["auroc"] = float(roc_auc_score(y, res.scores))
        metrics["auprc"] = float(average_precision_score(y, res.scores))
        tp = float((res.is_anomaly & y).sum())
        precision = tp / max(res.n_flagged, 1)
        recall = tp / float(y.sum())
        metrics["precision"], metrics["recall"] = precision, recall
        metrics["f1"] = 2 * precision * recall / (precision + recall) if tp else 0.0
    return metrics


def _dilate(mask: np.ndarray, k: int) -> np.ndarray:
    return np.convolve(mask.astype(np.int64), np.ones(2 * k + 1, dtype=np.int64), "same") > 0
