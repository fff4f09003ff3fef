"""`ScoreResult`: what `Detector.score` returns for one batch, and `LatentSample`, the latent
codes of a seeded sample of its records (for drift profiles)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from aemon.calibration import p_values
from aemon.data.images import ImageBatch
from aemon.data.timeseries import SeriesBatch
from aemon.errors import ConfigError

Batch = SeriesBatch | ImageBatch


@dataclass(frozen=True)
class LatentSample:
    """Latent codes of a seeded sample of a batch's records, for drift profiles. `rows`:
    sorted record indices (for a series, the last point of each sampled window on the
    window/stride grid; for images, the image); `codes`: (len(rows), latent_dim)."""

    rows: np.ndarray
    codes: np.ndarray


def sample_rows(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted indices of `k` of `n` records (all when n <= k), seeded: the one draw that the
    reference profile and every batch's profile share."""
    if k < 1:
        raise ConfigError(f"sample size must be >= 1, got {k}")
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


@dataclass
class ScoreResult:
    """Scores of one batch: one entry per record (a time-series point or an image).

    `scores`: higher = more anomalous; `is_anomaly`: score > `threshold`; `p_values`:
    conformal p-values against the (sorted) `calibration_scores`, small = anomalous.
    """

    scores: np.ndarray
    is_anomaly: np.ndarray
    calibration_scores: np.ndarray
    threshold: float
    timestamps: np.ndarray | None = None  # time series with a time column
    column_errors: np.ndarray | None = None  # time series: (n_points, n_columns)
    columns: tuple[str, ...] = ()
    events: pd.DataFrame | None = None  # time series: start, end, peak_score, contributions…
    error_maps: np.ndarray | None = None  # images: (n_images, H, W)
    image_keys: list[str] | None = None  # images: paths relative to the batch, or index:N
    # The batch as read (once): profiles, plots and rows take it from here, never re-read it.
    batch: Batch | None = None
    latents: LatentSample | None = None  # codes of a seeded sample, from the scoring pass

    def key(self, i: int) -> str:
        """Record key of record `i`: an image's key, a point's ISO time, or its row number."""
        return self.keys_at(np.array([i]))[0]

    @property
    def keys(self) -> list[str]:
        """Every record key (built on demand: a long series has millions)."""
        return self.keys_at(np.arange(self.n_records))

    def keys_at(self, idx: np.ndarray) -> list[str]:
        """The record keys of the records at `idx` (see `key`)."""
        if self.image_keys is not None:
            return [self.image_keys[i] for i in idx.tolist()]
        if self.timestamps is not None:
            stamps = np.asarray(self.timestamps[idx], dtype="datetime64[ns]")
            if (stamps.astype(np.int64) % 1000 == 0).all():  # no nanoseconds: datetime's own ISO text
                return [t.isoformat() for t in stamps.astype("datetime64[us]").tolist()]
            return list(pd.DatetimeIndex(stamps).map(pd.Timestamp.isoformat))
        return [str(i) for i in idx.tolist()]

    @functools.cached_property
    def p_values(self) -> np.ndarray:
        """Every record's p-value, computed on first use (most callers need a few: `p_values_at`)."""
        return self.p_values_at(slice(None))

    def p_values_at(self, idx: Any) -> np.ndarray:
        """The p-values of the records at `idx` (an index array or slice)."""
        return p_values(self.scores[idx], self.calibration_scores)

    @property
    def n_records(self) -> int:
        return len(self.scores)

    @property
    def n_flagged(self) -> int:
        return int(self.is_anomaly.sum())

    def event_ids(self) -> np.ndarray:
        """Per record: the index of its event in `events`, or -1."""
        ids = np.full(self.n_records, -1, dtype=np.int64)
        if self.events is not None:
            for i, (a, b) in enumerate(zip(self.events.start_index, self.events.end_index, strict=True)):
                ids[a : b + 1] = i
        return ids

    def to_frame(self) -> pd.DataFrame:
        """One row per record: key, [timestamp], score, is_anomaly, p_value, [event_id]."""
        frame = pd.DataFrame({"key": self.keys})
        if self.timestamps is not None:
            frame["timestamp"] = self.timestamps
        frame["score"] = self.scores
        frame["is_anomaly"] = self.is_anomaly
        frame["p_value"] = self.p_values
        if self.events is not None:
            frame["event_id"] = self.event_ids()
        return frame
