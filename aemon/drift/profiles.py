"""Profiles: one row per sampled record, with input, latent and score columns (see
`aemon.drift.columns`). The reference profile is computed once per model version and saved
with it; a batch's profile comes from its score result, without reading the batch again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from aemon.drift.columns import DEFAULT_SAMPLE_SIZE, LATENT_PREFIX, SCORE_COLUMN, input_name
from aemon.drift.verdict import CALIBRATION_KEY, DEFAULT_FALSE_DRIFT_RATE, calibrate_drift
from aemon.errors import DataError
from aemon.modalities import adapter_of

if TYPE_CHECKING:
    from aemon.detector import Detector, Input
    from aemon.results import Batch, LatentSample, ScoreResult

MAX_CALIBRATION_ROWS = 50_000  # windows (the most recent) or images the slices are drawn from


def reference_profile(
    detector: Detector,
    reference_data: Input,
    *,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    false_drift_rate: float = DEFAULT_FALSE_DRIFT_RATE,
) -> pd.DataFrame:
    """The reference sample a batch is compared with; compute it once per model version.

    Rows are at most `sample_size` records drawn evenly (seeded) from `reference_data`, the
    data the detector was fitted on. Alignment, for time series: one row per sampled window
    (on the detector's window/stride grid), placed at the window's **last point** — the value
    columns hold that point's values and the latent columns the code of the window ending
    there (the most recent context of the point). For images: one row per sampled image.

    The `score` column is the exception: it is a seeded draw from the detector's calibration
    scores (held-out reference data, the same scores its threshold and p-values come from),
    not the sampled rows' own scores. Most reference rows were training data, whose
    reconstruction error is biased low, and every new batch would look drifted against it.
    Drift tests are per column, so the score column need not be row-aligned; when there are
    fewer calibration scores than rows, its remaining rows are NaN.

    The drift verdict's calibration travels in `profile.attrs[CALIBRATION_KEY]` (Parquet keeps
    it): thresholds of the drift statistic per batch size such that a batch drawn from the
    reference is called drifted at `false_drift_rate` (`calibrate_drift`). It needs the
    latent codes of every reference window (at most MAX_CALIBRATION_ROWS): one encoder pass,
    no scoring, and a few hundred slices of numpy work per size (about a second).
    """
    batch = detector.read(reference_data)  # once, for the sample and the calibration table
    profile = _profile(batch, detector.latent_sample(batch, size=sample_size, seed=seed))
    calibration = np.asarray(detector.calibration_scores_, dtype=np.float64)
    if len(calibration) == 0:
        raise DataError("the detector holds no calibration scores to build a reference from")
    # Each calibration score at most once: with fewer scores than rows the rest stay NaN
    # (Evidently leaves NaN out), as repeating scores would fake a larger sample.
    column = np.full(len(profile), np.nan)
    drawn = np.random.default_rng(seed).permutation(calibration)[: len(profile)]
    column[: len(drawn)] = drawn
    profile[SCORE_COLUMN] = column
    profile.attrs[CALIBRATION_KEY] = calibrate_drift(
        profile,
        _calibration_table(detector, batch, seed),
        **detector.adapter_.drift_slices(detector),
        rate=false_drift_rate,
        sample_size=sample_size,
        seed=seed,
    )
    return profile


def batch_profile(result: ScoreResult) -> pd.DataFrame:
    """The profile of a scored batch: same columns and alignment as `reference_profile`.

    Its rows are the records whose latent codes `Detector.score` kept (at most
    `LATENT_SAMPLE`, 2,000 by default, drawn with the same seeded rule as the reference), read
    from the batch the result holds: the batch is not read or encoded again. The `score`
    column holds those records' scores (for a series, the score of the window's last point).
    """
    if result.batch is None or result.latents is None:
        raise DataError("this score result holds no batch: profile the result of Detector.score")
    profile = _profile(result.batch, result.latents)
    profile[SCORE_COLUMN] = np.asarray(result.scores, dtype=np.float64)[result.latents.rows]
    profile.attrs["n_records"] = int(result.n_records)  # the batch size the verdict is calibrated for
    return profile


def save_profile(profile: pd.DataFrame, path: str | Path) -> Path:
    """Write a profile to Parquet (folders created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    profile.to_parquet(out, index=False)
    return out


def load_profile(path: str | Path) -> pd.DataFrame:
    """Read a profile written by `save_profile`."""
    src = Path(path)
    if not src.exists():
        raise DataError("drift reference profile not found", source=src)
    # A profile is small; without Arrow's thread pool, which can abort the process as it
    # exits (apache/arrow#34314: measured here, 4 in 150 short runs).
    profile = pd.read_parquet(src, use_threads=False)
    if SCORE_COLUMN not in profile.columns:
        raise DataError(f"not a drift profile: no {SCORE_COLUMN!r} column", source=src)
    return profile


def _inputs(batch: Batch, rows: np.ndarray) -> pd.DataFrame:
    """The input columns of a profile at `rows`: a series' values, or image statistics."""
    return adapter_of(batch).profile_inputs(batch, rows).rename(columns=input_name)


def _profile(batch: Batch, latents: LatentSample) -> pd.DataFrame:
    """Input and latent columns of the sampled records."""
    return _with_latents(_inputs(batch, latents.rows), latents.codes)


def _with_latents(profile: pd.DataFrame, codes: np.ndarray) -> pd.DataFrame:
    latents = pd.DataFrame(
        codes.astype(np.float64), columns=[f"{LATENT_PREFIX}{i}" for i in range(codes.shape[1])]
    )
    return pd.concat([profile.reset_index(drop=True), latents], axis=1)


def _calibration_table(detector: Detector, batch: Batch, seed: int) -> pd.DataFrame:
    """Input and latent columns of (at most MAX_CALIBRATION_ROWS) reference records: every
    window of a series (its most recent stretch, in time order), or a random draw of images."""
    from aemon.scoring import encode  # torch: loaded when a reference is built, not on import

    rows, inputs = detector.adapter_.calibration_sample(detector, batch, MAX_CALIBRATION_ROWS, seed + 1)
    return _with_latents(_inputs(batch, rows), encode(detector.model_, inputs, detector.device_))
