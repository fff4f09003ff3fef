"""Drift reports and score monitoring: is a batch still like the data the model was built on?

A *profile* is a table with one row per sampled record and three groups of columns:

- **input**: the series' value columns, or per-image summary statistics (`brightness_mean`,
  `brightness_std`, `edge_energy`, `brightness_p99`);
- **latent**: the encoder's code (`latent_0` … `latent_{k-1}`);
- **score**: the anomaly score (`score`; higher = more anomalous).

The reference profile is computed once per model version and saved with it
(`save_profile`/`load_profile`); each scored batch gets a `batch_profile` from its score
result (the batch as read and the latent codes of the scoring pass: nothing is read again),
and `drift_report` compares the two: a calibrated verdict, a small summary (report.html and
report.json, a few KB), and Evidently's full HTML only when drift is found or asked for.
`plot_batch` draws the batch for people; `monitor_batch` does profile, plot and report in one
call. `flag_rate_check` asks whether a model flags more than the rate it was calibrated for.

This is the only module that imports Evidently, and it does so lazily inside functions
(`import evidently` takes ~5 s), so importing `aemon.drift` stays cheap.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aemon.calibration import parse_rate
from aemon.config import apply_environment_defaults
from aemon.data.images import ImageBatch
from aemon.data.timeseries import SeriesBatch
from aemon.errors import ConfigError, DataError, DriftError, NotFittedError

if TYPE_CHECKING:
    from aemon.detector import Batch, Detector, Input, LatentSample, ScoreResult

log = logging.getLogger(__name__)

SCORE_COLUMN = "score"
LATENT_PREFIX = "latent_"
IMAGE_STATS = ("brightness_mean", "brightness_std", "edge_energy", "brightness_p99")
GROUPS = ("input", "latent", "score")
DEFAULT_SAMPLE_SIZE = 2_000
DEFAULT_FALSE_DRIFT_RATE = 0.01  # drift verdicts on batches drawn from the reference
REPORT_HTML, REPORT_JSON, PLOT_PNG = "report.html", "report.json", "batch.png"  # every batch
EVIDENTLY_HTML, EVIDENTLY_JSON = "evidently.html", "evidently.json"  # on drift or when asked
AUTO_KS_MAX_ROWS = 1_000  # "auto" drift test: K-S up to this many rows, Wasserstein above
_LATENT_RE = re.compile(rf"^{LATENT_PREFIX}\d+$")
_UNSAFE_NAME_CHARS = re.compile(r"[^\w .()-]")


# --- profiles -------------------------------------------------------------------------------


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
    _check_fitted(detector)
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
    series = detector.modality_ == "timeseries"
    profile.attrs[CALIBRATION_KEY] = calibrate_drift(
        profile,
        _calibration_table(detector, batch, seed),
        contiguous=series,
        window=detector.window if series else 1,
        stride=detector.stride if series else 1,
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
    profile = pd.read_parquet(src)
    if SCORE_COLUMN not in profile.columns:
        raise DataError(f"not a drift profile: no {SCORE_COLUMN!r} column", source=src)
    return profile


def column_group(name: str) -> str:
    """'score', 'latent' or 'input', from a profile column's name."""
    if name == SCORE_COLUMN:
        return "score"
    if _LATENT_RE.match(name):
        return "latent"
    return "input"


def _check_fitted(detector: Detector) -> None:
    if not hasattr(detector, "model_"):
        raise NotFittedError("this Detector is not fitted yet: call fit() or Detector.load()")


def _input_name(name: str) -> str:
    # A value column must not pass for the score or a latent column.
    return f"input_{name}" if column_group(name) != "input" else name


def _inputs(batch: Batch, rows: np.ndarray) -> pd.DataFrame:
    """The input columns of a profile at `rows`: a series' values, or image statistics."""
    if isinstance(batch, SeriesBatch):
        values = batch.values[rows].astype(np.float64)
        return pd.DataFrame(values, columns=[_input_name(c) for c in batch.columns])
    return image_statistics(batch.images[rows])


def _profile(batch: Batch, latents: LatentSample) -> pd.DataFrame:
    """Input and latent columns of the sampled records."""
    return _with_latents(_inputs(batch, latents.rows), latents.codes)


def image_statistics(images: np.ndarray) -> pd.DataFrame:
    """Per-image summary statistics of (N, C, H, W) images in [0, 1], channels averaged.

    `edge_energy` is the mean squared gradient magnitude: it moves with blur, sharpness and
    texture, which brightness statistics miss.
    """
    gray = images.astype(np.float64).mean(axis=1)
    gy, gx = np.gradient(gray, axis=(1, 2))
    return pd.DataFrame(
        {
            "brightness_mean": gray.mean(axis=(1, 2)),
            "brightness_std": gray.std(axis=(1, 2)),
            "edge_energy": (gx**2 + gy**2).mean(axis=(1, 2)),
            "brightness_p99": np.percentile(gray.reshape(len(gray), -1), 99, axis=1),
        }
    )


def _with_latents(profile: pd.DataFrame, codes: np.ndarray) -> pd.DataFrame:
    latents = pd.DataFrame(
        codes.astype(np.float64), columns=[f"{LATENT_PREFIX}{i}" for i in range(codes.shape[1])]
    )
    return pd.concat([profile.reset_index(drop=True), latents], axis=1)


# --- the calibrated drift statistic ----------------------------------------------------------

CALIBRATION_KEY = "aemon_drift_calibration"  # in the reference profile's `attrs` (kept by Parquet)
STATISTIC = "max normalised Wasserstein distance"
CALIBRATION_SLICES = 200  # slices per calibrated batch size
CALIBRATION_SIZES = 20  # batch sizes calibrated, geometric from small to a third of the data
MAX_CALIBRATION_ROWS = 50_000  # windows (the most recent) or images the slices are drawn from
_PROBS = (np.arange(200) + 0.5) / 200  # quantile grid of the Wasserstein distance


def statistic_columns(profile: pd.DataFrame) -> list[str]:
    """The columns the drift statistic reads: input and latent, not the score (the score has
    its own calibrated check, `check_flag_rate`, and the reference's scores are held-out ones
    that slices of the training data cannot reproduce)."""
    return [str(c) for c in profile.columns if column_group(str(c)) != "score"]


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


def _calibration_table(detector: Detector, batch: Batch, seed: int) -> pd.DataFrame:
    """Input and latent columns of (at most MAX_CALIBRATION_ROWS) reference records: every
    window of a series (its most recent stretch, in time order), or a random draw of images."""
    from aemon.detector import sample_rows
    from aemon.scoring import encode

    if isinstance(batch, SeriesBatch):
        ends = detector._window_ends(batch.n_records)[-MAX_CALIBRATION_ROWS:]
        codes = encode(detector.model_, detector._windows(batch)[-MAX_CALIBRATION_ROWS:], detector.device_)
        return _with_latents(_inputs(batch, ends), codes)
    rows = sample_rows(batch.n_records, MAX_CALIBRATION_ROWS, seed + 1)
    return _with_latents(_inputs(batch, rows), encode(detector.model_, batch.images[rows], detector.device_))


# --- the report -----------------------------------------------------------------------------


@dataclass
class DriftResult:
    """The verdict of one batch's drift report.

    `columns`: per profile column, {"drifted": bool, "stat_test": str, "score": float,
    "threshold": float, "group": "input"|"latent"|"score"}; `score` is what Evidently
    compares with `threshold`: the distance in reference standard deviations for
    "wasserstein" (drift when >= threshold), the p-value for "ks" (drift when < threshold).
    `reasons` says why drift was declared (empty when it was not). `html_path` and
    `json_path` are the batch's small summary (a few KB, kept for every batch);
    `evidently_path` is Evidently's full HTML report (about 5 MB), written only when drift is
    detected or a full report is asked for (None otherwise). Without it, the per-column
    entries hold the calibrated distances alone ("stat_test": "wasserstein-normed").

    The verdict is calibrated: `statistic` (the largest normalised Wasserstein distance over
    the input and latent columns, each column's in `columns[name]["distance"]`) is compared
    with `threshold`, the value that batches of `calibrated_size` records drawn from the
    reference exceed at `promised_rate` (`calibrate_drift`). `drifted_share` and the per-column
    "drifted" are Evidently's per-column tests, for people reading the report; they do not
    decide. A reference profile built before calibration existed has no promise: the verdict
    then falls back to `decide_drift` over Evidently's tests and these fields are None.
    """

    drift_detected: bool
    drifted_share: float
    columns: dict[str, dict[str, Any]]
    html_path: Path
    json_path: Path
    plot_path: Path | None = None
    evidently_path: Path | None = None
    reasons: list[str] = field(default_factory=list)
    statistic: float | None = None
    threshold: float | None = None
    promised_rate: float | None = None
    batch_size: int | None = None
    calibrated_size: int | None = None

    @property
    def promise(self) -> str | None:
        """The verdict's promise in words, or None for an uncalibrated (old) reference."""
        if self.threshold is None or self.promised_rate is None:
            return None
        return (
            f"a batch of {self.calibrated_size} records drawn from the reference is called drift "
            f"{100 * self.promised_rate:g} % of the time (statistic {self.statistic:.3g}, "
            f"threshold {self.threshold:.3g})"
        )

    def drifted_columns(self, group: str | None = None) -> list[str]:
        """Names of the drifted columns, of one group or all."""
        return [
            name
            for name, col in self.columns.items()
            if col["drifted"] and (group is None or col["group"] == group)
        ]

    def row(self) -> dict[str, Any]:
        """The keyword arguments of `AnomalyStore.record_drift_report` for this report."""
        return {
            "drift_detected": self.drift_detected,
            "drifted_share": self.drifted_share,
            "details": self.to_dict(),
            "html_path": str(self.html_path),
            "json_path": str(self.json_path),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the anomaly database."""
        return {
            "drift_detected": self.drift_detected,
            "drifted_share": self.drifted_share,
            "reasons": list(self.reasons),
            "columns": {name: dict(col) for name, col in self.columns.items()},
            "html_path": str(self.html_path),
            "json_path": str(self.json_path),
            "plot_path": str(self.plot_path) if self.plot_path is not None else None,
            "evidently_path": str(self.evidently_path) if self.evidently_path is not None else None,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "promised_rate": self.promised_rate,
            "batch_size": self.batch_size,
            "calibrated_size": self.calibrated_size,
            "promise": self.promise,
        }


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: str | Path,
    *,
    method: str = "auto",
    threshold: float | None = None,
    drift_share: float = 0.5,
    batch_size: int | None = None,
    full: bool = True,
    plot_path: Path | None = None,
) -> DriftResult:
    """Compare a batch profile with the reference profile; write the batch's summary
    (report.html, report.json: a few KB) and, when drift is detected, the reference has no
    calibration, or `full` is true, Evidently's full report (evidently.html/.json, ~5 MB).

    Each column gets one Evidently drift test, `method` with `threshold` (None: the
    method's default). "auto" follows Evidently's own size rule with a stricter p-value:
    the two-sample K-S test at p < 0.01 when either profile has at most 1,000 rows (5 % false
    alarms per column, Evidently's default, is too many for a check that sends alerts), else
    the normed Wasserstein distance (drift when >= 0.1 reference standard deviations).
    **Time series should pass "wasserstein"** (`monitor_batch` does): K-S
    p-values assume independent rows, windows of a series are strongly autocorrelated, and
    K-S would cry drift on small clean batches, while a distance is an effect size that does
    not depend on the sample size.

    **The verdict** comes from the reference's calibration when it has one
    (`reference.attrs[CALIBRATION_KEY]`, written by `reference_profile`): drift when the
    statistic (the largest normalised Wasserstein distance over input and latent columns)
    exceeds the threshold calibrated for batches of `batch_size` records (default:
    `current.attrs["n_records"]`, set by `batch_profile`, else its row count), so a batch
    drawn from the reference is called drift at the stated rate (default 1 %). Evidently's
    per-column tests below then only fill the report and `drifted_share`.

    Without a calibration (a profile from an older aemon), the old rule decides: drift is
    detected when the **score** column drifted (the model now sees data it
    reconstructs differently: its flags and p-values no longer mean what they were
    calibrated to mean), or when at least `drift_share` of the **input** columns, or of the
    **latent** columns, drifted. Groups are judged apart so that a wide latent code cannot
    outvote the inputs, nor the other way round. A batch with many true anomalies moves the
    score distribution too: the verdict does not tell a burst of anomalies from drift, the
    alert shows the flagged count beside it. `drifted_share` is the share of all columns
    that drifted (as Evidently's DriftedColumnsCount).
    """
    if not 0 < drift_share <= 1:
        raise ConfigError(f"drift_share must be in (0, 1], got {drift_share}")
    if list(reference.columns) != list(current.columns):
        missing = sorted(set(reference.columns) ^ set(current.columns))
        raise DataError(
            "the batch profile and the reference profile have different columns "
            f"(differing: {missing or 'order only'}); was the reference built for another model version?"
        )
    if len(reference) == 0 or len(current) == 0:
        raise DataError(f"empty profile: reference {len(reference)} rows, batch {len(current)} rows")
    verdict = drift_verdict(reference, current, batch_size=batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if full or verdict is None or verdict.drift_detected:
        result = _evidently_report(reference, current, out, method, threshold, drift_share)
    else:  # the calibrated distances say it all; Evidently would add 5 MB and seconds
        columns = {
            name: {
                "drifted": d > verdict.threshold,
                "stat_test": "wasserstein-normed",
                "score": d,
                "threshold": verdict.threshold,
                "group": column_group(name),
            }
            for name, d in verdict.distances.items()
        }
        share = sum(d > verdict.threshold for d in verdict.distances.values()) / max(len(columns), 1)
        result = DriftResult(False, share, columns, out / REPORT_HTML, out / REPORT_JSON)
    if verdict is None:
        log.warning(
            "the reference profile has no drift calibration (built by an older aemon): "
            "the verdict falls back to per-column tests, which promise no false-drift rate"
        )
        result.drift_detected, result.reasons = decide_drift(result.columns, drift_share)
    else:
        _set_verdict(result, verdict)
    result.plot_path = plot_path
    write_summary(result)
    log.info(
        "drift report %s: %s (%s)",
        result.html_path,
        "drift detected: " + "; ".join(result.reasons) if result.drift_detected else "no drift",
        result.promise or "uncalibrated",
    )
    return result


def _evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out: Path,
    method: str,
    threshold: float | None,
    drift_share: float,
) -> DriftResult:
    """Evidently's full report (evidently.html/.json) and its per-column tests."""
    if method == "auto":
        small = min(len(reference), len(current)) <= AUTO_KS_MAX_ROWS
        method, threshold = ("ks", threshold or 0.01) if small else ("wasserstein", threshold)
    apply_environment_defaults()
    # Importing Evidently (~5 s) trips DeprecationWarnings inside its own dependencies
    # (numpy.core, litestar): nothing we can act on, only noise (or errors) for callers.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

    names = [str(c) for c in reference.columns]
    # Evidently embeds column names raw in the report's inline script data: a column named
    # "<script>..." would run when the report is opened. It sees harmless names only.
    safe = report_column_names(names)
    reference = reference.set_axis(safe, axis=1)
    current = current.set_axis(safe, axis=1)
    definition = DataDefinition(numerical_columns=safe)
    preset = DataDriftPreset(method=method, threshold=threshold, drift_share=drift_share)
    # A constant column (every image's p99 at 1.0) is legitimate; Evidently's correlation
    # charts then divide by a zero deviation and numpy warns.
    with np.errstate(divide="ignore", invalid="ignore"):
        snapshot = Report([preset], include_tests=True).run(
            current_data=Dataset.from_pandas(current.astype(np.float64), data_definition=definition),
            reference_data=Dataset.from_pandas(reference.astype(np.float64), data_definition=definition),
        )
    snapshot.save_html(str(out / EVIDENTLY_HTML))
    snapshot.save_json(str(out / EVIDENTLY_JSON))
    by_safe = _column_results(snapshot.dict(), safe)
    columns = {name: {**by_safe[s], "group": column_group(name)} for name, s in zip(names, safe, strict=True)}
    n_drifted = sum(col["drifted"] for col in columns.values())
    return DriftResult(
        drift_detected=False,
        drifted_share=n_drifted / len(columns),
        columns=columns,
        html_path=out / REPORT_HTML,
        json_path=out / REPORT_JSON,
        evidently_path=out / EVIDENTLY_HTML,
    )


def write_summary(result: DriftResult) -> None:
    """The batch's small report: report.json (the verdict, its promise, every column) and
    report.html (the same for people, with the batch plot and a link to Evidently's report
    when there is one). Every name is escaped: column names are user data."""
    import html
    import json

    summary = _strict(result.to_dict())
    result.json_path.write_text(json.dumps(summary, indent=1, allow_nan=False, default=_finite))
    folder = result.html_path.parent
    ranked = sorted(result.columns.items(), key=lambda kv: -float(kv[1].get("distance", kv[1]["score"]) or 0))
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(col['group'])}</td>"
        f"<td>{float(col.get('distance', col['score'])):.3g}</td>"
        f"<td>{'yes' if col['drifted'] else ''}</td></tr>"
        for name, col in ranked[:MAX_SUMMARY_COLUMNS]
    )
    hidden = len(ranked) - MAX_SUMMARY_COLUMNS
    more = f"<p>and {hidden} more columns in report.json</p>" if hidden > 0 else ""
    verdict = "Drift detected" if result.drift_detected else "No drift"
    parts = [
        "<!doctype html><meta charset='utf-8'><title>aemon drift report</title>",
        "<style>body{font:14px sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style>",
        f"<h1>{verdict}</h1>",
        *(f"<p>{html.escape(r)}</p>" for r in result.reasons),
        f"<p>{html.escape(result.promise or 'uncalibrated reference: per-column tests decide')}</p>",
    ]
    if result.plot_path is not None and result.plot_path.exists():
        plot = html.escape(os.path.relpath(result.plot_path, folder))
        parts.append(f"<img src='{plot}' alt='the batch' style='max-width:100%'>")
    if result.evidently_path is not None:
        full = html.escape(os.path.relpath(result.evidently_path, folder))
        parts.append(f"<p><a href='{full}'>Evidently's full report</a></p>")
    parts.append("<table><tr><th>column</th><th>group</th><th>distance</th><th>drifted</th></tr>")
    parts.append(rows + "</table>" + more)
    result.html_path.write_text("\n".join(parts))


def _strict(value: Any) -> Any:
    """`value` with NaN/inf floats as None: `default=` never sees floats (an input of 1e308
    gives infinite distances)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _finite(value: Any) -> Any:
    """JSON for numpy scalars; None for NaN/inf (strict JSON has no NaN)."""
    number = float(value)
    return number if math.isfinite(number) else None


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


def _set_verdict(result: DriftResult, verdict: DriftVerdict) -> None:
    """Copy a calibrated verdict into `result`, with its reason."""
    distances, threshold = verdict.distances, verdict.threshold
    for name, d in distances.items():
        result.columns[name]["distance"] = d
    result.drift_detected = verdict.drift_detected
    result.statistic, result.threshold = verdict.statistic, threshold
    result.promised_rate = verdict.promised_rate
    result.batch_size, result.calibrated_size = verdict.batch_size, verdict.calibrated_size
    if verdict.drift_detected:
        moved = sorted((n for n, d in distances.items() if d > threshold), key=lambda n: -distances[n])
        shown = ", ".join(f"{n} ({distances[n]:.2g})" for n in moved[:5])
        more = f" and {len(moved) - 5} more" if len(moved) > 5 else ""
        result.reasons = [
            f"drift statistic {verdict.statistic:.3g} above its threshold {threshold:.3g}: "
            f"columns beyond it, in reference standard deviations: {shown}{more}; a batch of "
            f"{verdict.calibrated_size} records drawn from the reference goes beyond it "
            f"{100 * verdict.promised_rate:g} % of the time"
        ]


def report_column_names(names: Sequence[str]) -> list[str]:
    """Column names safe to put in an HTML report: anything but letters, digits, spaces and
    `_ . - ( )` becomes `_`, and a name that then repeats gets a `_2`, `_3`... suffix."""
    safe: list[str] = []
    seen: set[str] = set()
    for name in names:
        base = _UNSAFE_NAME_CHARS.sub("_", str(name))[:120] or "_"
        candidate, n = base, 1
        while candidate in seen:
            n += 1
            candidate = f"{base}_{n}"
        seen.add(candidate)
        safe.append(candidate)
    return safe


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


def _column_results(snapshot: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per column: the ValueDrift metric's statistic and its test's verdict."""
    metrics: dict[str, dict[str, Any]] = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            metrics[metric["id"]] = metric
    verdicts: dict[str, str] = {}
    for test in snapshot.get("tests", []):
        metric_id = test.get("metric_config", {}).get("metric_id")
        if metric_id in metrics:
            status = test.get("status", "")
            verdicts[metric_id] = str(getattr(status, "value", status))  # TestStatus is an enum
    results: dict[str, dict[str, Any]] = {}
    for metric_id, metric in metrics.items():
        config = metric["config"]
        status = verdicts.get(metric_id)
        if status is None:
            log.warning(
                "Evidently gave no drift test for column %r; counted as not drifted", config["column"]
            )
        results[str(config["column"])] = {
            "drifted": status in ("FAIL", "WARNING"),
            "stat_test": str(config.get("method")),
            "score": float(metric["value"]),
            "threshold": float(config["threshold"]) if config.get("threshold") is not None else None,
            "group": column_group(str(config["column"])),
        }
    missing = [n for n in names if n not in results]
    if missing:
        raise DriftError(f"Evidently's report has no drift result for columns {missing}")
    return {n: results[n] for n in names}


def monitor_batch(
    result: ScoreResult, reference: pd.DataFrame, out_dir: str | Path, *, full: bool = False
) -> DriftResult:
    """Profile a scored batch and write its drift report to `out_dir`: the small summary
    always; the batch plot (batch.png) when records are flagged or drift is found; Evidently's
    full report on drift. `full`: both, whatever the batch. Everything comes from `result`
    (the batch it read, the codes of its scoring pass).

    A plot that cannot be drawn is logged and left out: it must not cost the batch its report.
    """
    current = batch_profile(result)
    verdict = drift_verdict(reference, current, batch_size=result.n_records)
    out = Path(out_dir)
    plot: Path | None = None
    # A quiet batch needs no picture: drawing one costs about a second per million points.
    if full or result.n_flagged or verdict is None or verdict.drift_detected:
        try:
            plot = plot_batch(result, out / PLOT_PNG)
        except Exception as exc:  # a plot is a convenience; the report and verdict stand
            log.warning("could not draw the batch plot in %s: %s", out_dir, exc)
    # Series windows are autocorrelated: K-S p-values would cry drift (see drift_report).
    method = "wasserstein" if isinstance(result.batch, SeriesBatch) else "auto"
    return drift_report(
        reference, current, out, method=method, batch_size=result.n_records, full=full, plot_path=plot
    )


# --- plots ----------------------------------------------------------------------------------

MAX_PLOT_POINTS = 5_000
MAX_PLOT_IMAGES = 8
PLOT_DPI = 72  # a summary plot, kept for every batch: about 30 KB
MAX_PLOT_EVENTS = 200  # shading thousands of spans makes drawing slow and the plot unreadable
MAX_SUMMARY_COLUMNS = 30  # rows of the summary page's column table (report.json has all)


def plot_batch(result: ScoreResult, path: str | Path, *, max_images: int = MAX_PLOT_IMAGES) -> Path:
    """Draw a scored batch to a PNG that a person can read at a glance; returns the path.

    Time series: each value column and the score (with the threshold) over time, flagged
    events shaded; long series are drawn as min/max envelopes. Images: the `max_images`
    highest-scoring flagged images (the highest-scoring ones when none is flagged) above their
    per-pixel error maps.
    """
    apply_environment_defaults()  # MPLCONFIGDIR under AEMON_HOME, before matplotlib loads
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(result.batch, SeriesBatch):
        _plot_series(result, result.batch, out)
    elif isinstance(result.batch, ImageBatch):
        _plot_images(result, result.batch, out, max_images)
    else:
        raise DataError("this score result holds no batch: plot the result of Detector.score")
    return out


def _save_png(fig: Any, out: Path) -> None:
    """A plot kept for every batch: 72 dpi, 64 colours (about a third of matplotlib's PNG)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=PLOT_DPI, format="png")
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(64).save(out, optimize=True)


def _envelope(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, low, high) with at most MAX_PLOT_POINTS buckets; keeps spikes a stride would drop."""
    step = max(1, math.ceil(len(y) / MAX_PLOT_POINTS))
    if step == 1:
        return x, y, y
    n = len(y) // step * step
    head = y[:n].reshape(-1, step)
    lo, hi = head.min(axis=1), head.max(axis=1)
    xs = x[:n:step]
    if n < len(y):
        lo, hi = np.r_[lo, y[n:].min()], np.r_[hi, y[n:].max()]
        xs = np.r_[xs, x[n : n + 1]]
    return xs, lo, hi


def _plot_series(result: ScoreResult, series: SeriesBatch, out: Path) -> None:
    from matplotlib.figure import Figure

    columns = list(result.columns)
    n = result.n_records
    x: np.ndarray = result.timestamps if result.timestamps is not None else np.arange(n)
    events = (
        result.events if result.events is not None else pd.DataFrame(columns=["start_index", "end_index"])
    )
    n_events = len(events)
    shaded = events.nlargest(MAX_PLOT_EVENTS, "peak_score") if n_events > MAX_PLOT_EVENTS else events
    panels = [*columns, SCORE_COLUMN]
    fig = Figure(figsize=(12, 1.8 * len(panels) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, panels, strict=True):
        y = np.asarray(result.scores if name == SCORE_COLUMN else series.values[:, columns.index(name)])
        xs, lo, hi = _envelope(x, y.astype(np.float64))
        if lo is hi:
            ax.plot(xs, y, lw=0.7, color="tab:blue" if name != SCORE_COLUMN else "black")
        else:
            ax.fill_between(xs, lo, hi, lw=0.5, color="tab:blue" if name != SCORE_COLUMN else "black")
        if name == SCORE_COLUMN:
            ax.axhline(result.threshold, color="tab:red", ls="--", lw=1, label="threshold")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_ylabel(name, fontsize=9)
        for a, b in zip(shaded.start_index, shaded.end_index, strict=True):
            ax.axvspan(x[int(a)], x[int(b)], color="tab:red", alpha=0.25, lw=0)
    shown = "shaded" if len(shaded) == n_events else f"strongest {len(shaded)} shaded"
    events_text = f"{n_events} event" + ("" if n_events == 1 else "s")
    fig.suptitle(f"{result.n_flagged} of {n} points flagged, {events_text} ({shown})")
    _save_png(fig, out)


def _plot_images(result: ScoreResult, batch: ImageBatch, out: Path, max_images: int) -> None:
    from matplotlib.figure import Figure

    maps = result.error_maps
    if maps is None:
        raise ConfigError("an image drift plot needs the error maps of an image detector's result")
    candidates = np.flatnonzero(result.is_anomaly) if result.n_flagged else np.arange(result.n_records)
    top = candidates[np.argsort(-result.scores[candidates], kind="stable")][:max_images]
    k = max(len(top), 1)
    fig = Figure(figsize=(1.8 * k + 0.4, 4.2), layout="constrained")
    axes = fig.subplots(2, k, squeeze=False)
    vmax = float(maps[top].max()) if len(top) else 1.0
    for j in range(k):
        for ax in axes[:, j]:
            ax.set_axis_off()
        if j >= len(top):
            continue
        i = int(top[j])
        img = batch.images[i].transpose(1, 2, 0)
        axes[0, j].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        key = result.key(i)
        axes[0, j].set_title(f"{key[-18:]}\nscore {result.scores[i]:.4g}", fontsize=7)
        axes[1, j].imshow(maps[i], cmap="inferno", vmin=0, vmax=vmax)
    what = "flagged" if result.n_flagged else "highest-scoring (none flagged)"
    fig.suptitle(
        f"{result.n_flagged} of {result.n_records} images flagged; top {len(top)} {what}: image / error map"
    )
    _save_png(fig, out)


# --- score monitoring -----------------------------------------------------------------------


@dataclass(frozen=True)
class FlagRateCheck:
    """Whether a batch's flag rate keeps the false-positive rate the model promised.

    `p_value`: one-sided binomial test of "the true flag rate is <= the promise";
    `broken`: p_value < alpha and the observed rate is at least `min_ratio` times the promise.
    """

    n_flagged: int
    n_records: int
    observed_rate: float
    promised_rate: float
    p_value: float
    broken: bool
    message: str


def flag_rate_check(
    n_flagged: int,
    n_records: int,
    target_fpr: float,
    *,
    alpha: float = 0.001,
    block_size: int = 1,
    min_ratio: float = 1.5,
) -> FlagRateCheck:
    """Does the batch flag more than the `target_fpr` the threshold was calibrated for?

    A broken promise means the data or the model changed (or the threshold is wrong): the
    flags stop meaning "1 in 100 normal records". The test is a one-sided binomial test (its
    tail, as scipy.stats.binomtest computes it). It assumes independent records: true for
    images, not for time series, where a point's score is the mean over the windows covering
    it, so neighbours are flagged together and a plain test on points would be
    anti-conservative (too many broken promises). Pass `block_size` = the window length for series:
    records are then counted in blocks (n / block_size trials, the flagged count scaled
    alike), which is conservative.
    `min_ratio` keeps huge batches from failing on a practically irrelevant excess.

    Example:
        >>> flag_rate_check(90, 1000, 0.01).message
        'this model flags 9.0 % where it promised 1.0 % (p = 1.3e-54)'
    """
    # scipy.special, not scipy.stats: the same tail sums, without 1-2 s of imports per command.
    from scipy.special import bdtrc

    if not 0 < target_fpr < 1:
        raise ConfigError(f"target_fpr must be in (0, 1), got {target_fpr}")
    if n_records < 0 or not 0 <= n_flagged <= max(n_records, 0):
        raise ConfigError(f"need 0 <= n_flagged <= n_records, got {n_flagged} of {n_records}")
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    if n_records == 0:
        return FlagRateCheck(0, 0, 0.0, target_fpr, 1.0, False, "no records to check the flag rate on")
    observed = n_flagged / n_records
    n_trials = max(1, n_records // block_size)
    k = min(n_trials, round(n_flagged * n_trials / n_records))
    p_value = float(bdtrc(k - 1, n_trials, target_fpr)) if k else 1.0  # P(X >= k)
    broken = p_value < alpha and observed >= min_ratio * target_fpr
    rates = f"{100 * observed:.1f} % where it promised {100 * target_fpr:.1f} % (p = {p_value:.2g})"
    message = f"this model flags {rates}" if broken else f"flag rate within the promise: {rates}"
    return FlagRateCheck(n_flagged, n_records, observed, target_fpr, p_value, broken, message)


def event_rate_check(
    n_events: int, span: pd.Timedelta, budget: str, *, alpha: float = 0.001, min_ratio: float = 1.5
) -> FlagRateCheck:
    """Does a series batch raise more alarms (events) than the false-alarm `budget` promised?

    One-sided Poisson test of "the true event rate is <= the budget" over the batch's `span`;
    broken when p < alpha and the count is at least `min_ratio` times the promise. Rates in
    the result are events per day.

    Example:
        >>> event_rate_check(6, pd.Timedelta(days=1), "1/week").message
        'this model raised 6 alarms in 1 days where it promised at most 1/week (p = 1e-08)'
    """
    from scipy.special import pdtrc  # not scipy.stats: see flag_rate_check

    count, period = parse_rate(budget)
    days = max(span / pd.Timedelta(days=1), 0.0)
    promised = count * (span / period)
    p_value = float(pdtrc(n_events - 1, promised)) if n_events else 1.0  # P(X >= n_events)
    broken = p_value < alpha and n_events >= min_ratio * promised
    what = f"{n_events} alarms in {days:.3g} days where it promised at most {budget} (p = {p_value:.2g})"
    message = f"this model raised {what}" if broken else f"alarms within the promise: {what}"
    per_day = count / (period / pd.Timedelta(days=1))
    observed = n_events / days if days > 0 else 0.0
    return FlagRateCheck(n_events, n_events, observed, per_day, p_value, broken, message)


def check_flag_rate(detector: Detector, result: ScoreResult, *, alpha: float = 0.001) -> FlagRateCheck | None:
    """The batch's alarms against its detector's promise (None: no promise): events per time
    for a false-alarm budget (`event_rate_check`), else the pointwise flag rate
    (`flag_rate_check`; series are counted in blocks of one window).
    """
    budget = detector.false_alarms_ if detector.modality_ == "timeseries" else None
    if budget is not None and result.events is not None and result.timestamps is not None:
        stamps = result.timestamps
        span = pd.Timedelta(stamps[-1] - stamps[0]) if len(stamps) else pd.Timedelta(0)
        return event_rate_check(len(result.events), span, budget, alpha=alpha)
    promise = detector.threshold_info_.promised_fpr
    if promise is None:
        return None
    block = detector.window if detector.modality_ == "timeseries" else 1
    return flag_rate_check(result.n_flagged, result.n_records, promise, alpha=alpha, block_size=block)
