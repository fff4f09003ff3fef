"""The calibrated drift verdict: the drift statistic (the largest normalised Wasserstein
distance over a profile's input and latent columns), its thresholds per batch size calibrated
on slices of the reference, and the per-column rule that older, uncalibrated references
fall back to."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from aemon.drift.columns import DEFAULT_SAMPLE_SIZE, GROUPS, statistic_columns
from aemon.errors import ConfigError

DEFAULT_FALSE_DRIFT_RATE = 0.01  # drift verdicts on batches drawn from the reference
CALIBRATION_KEY = "aemon_drift_calibration"  # in the reference profile's `attrs` (kept by Parquet)
STATISTIC = "max normalised Wasserstein distance"
CALIBRATION_SLICES = 200  # slices per calibrated batch size
CALIBRATION_SIZES = 20  # batch sizes calibrated, geometric from small to a third of the data
_PROBS = (np.arange(200) + 0.5) / 200  # quantile grid of the Wasserstein distance


def _quantiles(x: np.ndarray) -> np.ndarray:
    """np.quantile(x, _PROBS, axis=0) (linear interpolation), without its overhead."""
    xs = np.sort(x, axis=0)
    pos = _PROBS * (len(xs) - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(xs) - 1)
    frac = (pos - lo)[:, None]
    return xs[lo] * (1 - frac) + xs[hi] * frac


def _summary(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantile grid (len(_PROBS), k) and scale (k,) of reference columns."""
    q = _quantiles(reference)
    sd = reference.std(axis=0)
    scale = np.where(sd > 0, sd, 1e-3 * np.maximum(np.abs(reference.mean(axis=0)), 1.0))
    return q, scale


def _distances(q_ref: np.ndarray, scale: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Per column: Wasserstein-1 distance to the reference, in reference standard deviations."""
    q = _quantiles(current)
    return np.abs(q - q_ref).mean(axis=0) / scale


def column_distances(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """The normalised Wasserstein distance of each input and latent column of a batch profile
    to the reference profile; the drift statistic is their maximum."""
    cols = statistic_columns(reference)
    q_ref, scale = _summary(reference[cols].to_numpy(np.float64))
    d = _distances(q_ref, scale, current[cols].to_numpy(np.float64))
    return {c: float(v) for c, v in zip(cols, d, strict=True)}


def calibrate_drift(
    profile: pd.DataFrame,
    table: pd.DataFrame,
    *,
    contiguous: bool,
    window: int = 1,
    stride: int = 1,
    rate: float = DEFAULT_FALSE_DRIFT_RATE,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    n_slices: int = CALIBRATION_SLICES,
    n_sizes: int = CALIBRATION_SIZES,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Thresholds of the drift statistic per batch size, from slices of the reference.

    `table` holds the reference's records with the profile's input and latent columns, in
    time order for a series (one row per window, at its last point). Each slice is what a
    batch drawn from the reference would give: for a series (`contiguous`) a contiguous block
    of windows, starting at `n_slices` points spread evenly over the reference, so
    autocorrelation is kept (a day of a daily cycle is not 288 independent
    draws); for images a random subset, compared with the *other* records (so that a slice is
    never compared with itself). Each slice is sampled like `batch_profile` (at most
    `sample_size` rows). The threshold of a size is the conformal (1 - rate) quantile of its
    slices' statistics, made non-increasing in the size (larger batches vary less).
    Sizes are in records (series: rows, a batch of n rows has (n - window) // stride + 1
    windows). Returns the dict stored in `profile.attrs[CALIBRATION_KEY]`, or None when the
    reference is too small to slice.
    """
    if not 0 < rate < 1:
        raise ConfigError(f"the false-drift rate must be in (0, 1), got {rate}")
    cols = statistic_columns(profile)
    data = table[cols].to_numpy(np.float64)
    m_total = len(data)
    m_hi = m_total // 3 if contiguous else m_total // 2
    if m_hi < 2:
        return None
    m_lo = min(max(16, window // stride + 1) if contiguous else 20, m_hi)
    counts = np.unique(np.geomspace(m_lo, m_hi, n_sizes).round().astype(int))
    rng = np.random.default_rng(seed)
    q_ref, scale = _summary(profile[cols].to_numpy(np.float64))
    rank = math.ceil((n_slices + 1) * (1 - rate))  # conformal: 1-based rank among the slices
    thresholds = []
    for m in counts:
        stats = np.empty(n_slices)
        # Series: starts spread evenly over the reference, so every stretch of it is tried.
        starts = np.linspace(0, m_total - m, n_slices).round().astype(int)
        for i in range(n_slices):
            if contiguous:
                rows = np.arange(starts[i], starts[i] + m)
                q, s = q_ref, scale
            else:
                perm = rng.permutation(m_total)
                rows, rest = perm[:m], perm[m:]
                q, s = _summary(data[rest[:sample_size]])
            if len(rows) > sample_size:
                rows = np.sort(rng.choice(rows, sample_size, replace=False))
            stats[i] = _distances(q, s, data[rows]).max()
        stats.sort()
        thresholds.append(float(stats[min(rank, n_slices) - 1]))
    # Larger batches vary less: a size's threshold is at least that of every larger size.
    thresholds = list(np.maximum.accumulate(thresholds[::-1])[::-1])
    sizes = (counts - 1) * stride + window if contiguous else counts
    return {
        "statistic": STATISTIC,
        "rate": float(rate),
        "sizes": [int(x) for x in sizes],
        "thresholds": [float(x) for x in thresholds],
        "n_slices": int(n_slices),
        "slices": "contiguous" if contiguous else "random",
        "source_records": int(m_total),
        "sample_size": int(sample_size),
        "columns": cols,
    }


def drift_threshold(calibration: dict[str, Any], batch_size: int) -> tuple[float, int]:
    """(threshold, calibrated size) for a batch of `batch_size` records: the threshold of the
    largest calibrated size not above it. Conservative, as thresholds do not increase with the
    size (larger batches vary less), and not interpolated: a seasonal series' statistic is not
    smooth in the size (it drops when a batch covers a whole cycle). Batches smaller than
    every calibrated size get the smallest one's."""
    sizes = np.asarray(calibration["sizes"])
    i = max(int(np.searchsorted(sizes, batch_size, side="right")) - 1, 0)
    return float(calibration["thresholds"][i]), int(sizes[i])


@dataclass(frozen=True)
class DriftVerdict:
    """The calibrated drift verdict of a batch profile (`drift_verdict`)."""

    drift_detected: bool
    statistic: float  # the largest normalised Wasserstein distance over input and latent columns
    threshold: float  # exceeded at `promised_rate` by batches of `calibrated_size` from the reference
    promised_rate: float
    batch_size: int
    calibrated_size: int
    distances: dict[str, float]  # per input and latent column


def drift_verdict(
    reference: pd.DataFrame, current: pd.DataFrame, *, batch_size: int | None = None
) -> DriftVerdict | None:
    """The calibrated verdict alone, without Evidently (milliseconds): None when the reference
    profile carries no calibration. `batch_size`: records in the batch (default
    `current.attrs["n_records"]`, set by `batch_profile`, else the profile's row count)."""
    calibration = reference.attrs.get(CALIBRATION_KEY)
    if calibration is None:
        return None
    size = int(batch_size if batch_size is not None else current.attrs.get("n_records", len(current)))
    distances = column_distances(reference, current)
    threshold, calibrated = drift_threshold(calibration, size)
    statistic = max(distances.values())
    return DriftVerdict(
        statistic > threshold, statistic, threshold, float(calibration["rate"]), size, calibrated, distances
    )


def decide_drift(columns: dict[str, dict[str, Any]], drift_share: float = 0.5) -> tuple[bool, list[str]]:
    """The drift rule of `drift_report` over per-column results: (detected, reasons)."""
    reasons = []
    for group in GROUPS:
        cols = [c for c in columns.values() if c["group"] == group]
        n_drifted = sum(c["drifted"] for c in cols)
        if not cols or not n_drifted:
            continue
        if group == "score":
            reasons.append("the score distribution drifted")
        elif n_drifted / len(cols) >= drift_share:
            reasons.append(f"{n_drifted} of {len(cols)} {group} columns drifted")
    return bool(reasons), reasons
