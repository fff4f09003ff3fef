"""`Detector`: preprocessing + autoencoder + calibrated threshold, one object, one folder.

Follows the scikit-learn estimator contract: `__init__` only stores its arguments, `fit`
returns `self`, fitted state ends in `_`, and methods that need a fitted detector raise
`NotFittedError` before `fit`. Scores: higher = more anomalous; flagged when score > threshold.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aemon.calibration import (
    THRESHOLD_METHODS,
    Threshold,
    calibrate_event_budget,
    calibrate_threshold,
    conformal_quantile,
    hold_on_training_span,
    parse_rate,
    reference_outliers,
    summarize_scores,
    thin_scores,
)
from aemon.data.images import ImageBatch
from aemon.data.timeseries import SeriesBatch
from aemon.errors import CalibrationError, ConfigError, NotFittedError, SchemaError
from aemon.manifest import detector_manifest, load_detector, save_detector
from aemon.modalities import Modality, adapter_for, infer_adapter
from aemon.models import ARCHITECTURES, Autoencoder, default_spec
from aemon.results import Batch, LatentSample, ScoreResult, sample_rows
from aemon.scoring import SeriesScoring, encode
from aemon.training import TrainConfig, TrainResult, resolve_device

log = logging.getLogger(__name__)

Input = str | Path | pd.DataFrame | np.ndarray
# Series alarms are events: the default promise is this many false events per unit of time,
# calibrated on held-out reference data (chosen by measurement, see the README).
DEFAULT_FALSE_ALARMS = "1/week"
# The held-out threshold this many times the training span's warns (`_report_unseen_held_out`).
UNSEEN_HELD_OUT_RATIO = 10.0
LATENT_SAMPLE = 2_000  # records whose latent codes a score keeps for the drift profile


DAILY_SPREAD_HOURS = 1.0  # excursions starting within this of one time of day recur daily


def _daily_hours(stamps: np.ndarray, spans: np.ndarray) -> str | None:
    """'HH:MM-HH:MM' when two or more excursions, on different days, start within
    DAILY_SPREAD_HOURS of one time of day (a nightly batch), else None."""
    starts = pd.DatetimeIndex([pd.Timestamp(stamps[a]) for a, _ in spans])
    ends = pd.DatetimeIndex([pd.Timestamp(stamps[b]) for _, b in spans])
    if len(starts) < 2 or starts.normalize().nunique() < len(starts):
        return None
    hours = (starts.hour + starts.minute / 60).to_numpy()
    # On the circle of the day: the spread around the circular mean.
    angle = hours / 24 * 2 * np.pi
    mean = np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())
    spread = np.abs((angle - mean + np.pi) % (2 * np.pi) - np.pi) / (2 * np.pi) * 24
    if spread.max() > DAILY_SPREAD_HOURS:
        return None
    return f"{min(starts.time).strftime('%H:%M')}-{max(ends.time).strftime('%H:%M')}"


class Detector:
    """An autoencoder anomaly detector for time series or images with a calibrated threshold.

    Example:
        >>> det = Detector(modality="timeseries", window=32, epochs=5).fit(frame)  # doctest: +SKIP
        >>> res = det.score(new_frame)  # res.scores, res.is_anomaly, res.events  # doctest: +SKIP

    Arguments (stored as given; checked by `fit`):
        modality: "timeseries" or "image"; None infers it from the data.
        window, stride: window length and step (time series).
        model: "auto" (dense for series, conv for images), "dense", "conv", or for series
            the sequence autoencoders "lstm" (LSTM seq2seq) and "aer" (reconstruction plus
            backward/forward prediction of the window's edges, AER-style); see aemon.models.
        objective: undercomplete | denoising | sparse | contractive | vae.
        latent_dim, hidden: bottleneck size and layer widths (None: sized from the input).
        loss: mse | l1 | bce (the element-wise error is also the anomaly score).
        noise, noise_level: corruption of the denoising objective.
        threshold: quantile | mad | pot | f1; target_fpr: promised false-positive rate.
        false_alarms: time series only, a budget such as "1/day" counted in events on held-out
            reference data; it decides the threshold (never below the `target_fpr` quantile,
            so events cannot hide a flood of flagged points). "auto" (default): the budget
            DEFAULT_FALSE_ALARMS for a series with a time column and the `quantile` method;
            a pointwise threshold otherwise (no time column, or `threshold` mad|pot|f1).
            None: pointwise, at `target_fpr`.
        event_gap: flagged points closer than this many points join one event
            (None: window // 2).
        calendar: series with a time column: give the model the phase of each daily or weekly
            cycle longer than its window that the training data shows (autocorrelation at
            that lag >= 0.3), as sin/cos inputs, so that a flat day inside a daily cycle is
            no longer reconstructed as normal. The batch must then have its time column.
        smoothing: series: points of the centred moving average over point scores (None:
            window // 4; 1: none). Column errors are first divided by each column's typical
            error on held-out reference data (see `aemon.scoring.SeriesScoring`).
        learning_rate: Adam's step size (None: 1e-3 for series, 2e-3 for images).
        samples_per_epoch: samples drawn per epoch (None: the training set size clipped to
            [4096, 50000] for series, 2048 for images).
        calibration_fraction: share of the reference held out to calibrate the threshold (the
            last rows of a series, a random subset of images); validation_fraction likewise
            for early stopping.
        timestamp_col, columns, fill: how to read a series (see `aemon.data.timeseries`).
        image_size: (height, width) images are resized to; None keeps the first image's size.
        worst_pixels: an image's score is the mean error of its worst pixels, this share of
            them (1.0: every pixel). A defect covers a few pixels; averaging it with hundreds
            of well-reconstructed ones dilutes it (MNIST one-class AUROC 0.948 -> 0.954).
        device: "auto" (CUDA when available), "cpu", "cuda", ...; seed: for splits, weights
            and noise (same seed, same model on CPU).
    """

    # Fitted state, set by `fit` or `load`.
    modality_: str
    schema_: Any  # SeriesSchema | ImageSchema
    model_: Autoencoder
    threshold_: float
    threshold_info_: Threshold
    calibration_scores_: np.ndarray  # sorted, for p-values
    offset_: np.ndarray
    scale_: np.ndarray
    calendar_: tuple[float, ...]  # series: cycles given to the model as phases
    series_scoring_: SeriesScoring | None  # series: how window errors become point scores
    training_: TrainResult
    fingerprint_: str  # sha256 of the training data
    n_train_records_: int

    def __init__(
        self,
        modality: str | None = None,
        *,
        window: int = 64,
        stride: int = 1,
        model: str = "auto",
        objective: str = "undercomplete",
        latent_dim: int | None = None,
        hidden: Sequence[int] | None = None,
        loss: str = "mse",
        noise: str = "gaussian",
        noise_level: float = 0.2,
        sparsity: str = "l1",
        sparsity_weight: float = 1e-3,
        contractive_weight: float = 1e-3,
        beta: float = 1.0,
        epochs: int = 60,
        batch_size: int = 128,
        learning_rate: float | None = None,
        patience: int = 8,
        samples_per_epoch: int | None = None,
        validation_fraction: float = 0.1,
        calibration_fraction: float = 0.2,
        threshold: str = "quantile",
        target_fpr: float = 0.01,
        false_alarms: str | None = "auto",
        event_gap: int | None = None,
        smoothing: int | None = None,
        calendar: bool = True,
        timestamp_col: str | None = None,
        columns: Sequence[str] | None = None,
        fill: str | None = None,
        image_size: tuple[int, int] | None = None,
        worst_pixels: float = 0.05,
        device: str = "auto",
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.modality = modality
        self.window = window
        self.stride = stride
        self.model = model
        self.objective = objective
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.loss = loss
        self.noise = noise
        self.noise_level = noise_level
        self.sparsity = sparsity
        self.sparsity_weight = sparsity_weight
        self.contractive_weight = contractive_weight
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.samples_per_epoch = samples_per_epoch
        self.validation_fraction = validation_fraction
        self.calibration_fraction = calibration_fraction
        self.threshold = threshold
        self.target_fpr = target_fpr
        self.false_alarms = false_alarms
        self.event_gap = event_gap
        self.smoothing = smoothing
        self.calendar = calendar
        self.timestamp_col = timestamp_col
        self.columns = columns
        self.fill = fill
        self.image_size = image_size
        self.worst_pixels = worst_pixels
        self.device = device
        self.seed = seed
        self.progress = progress

    # --- parameters ---------------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as given (JSON-ready)."""
        names = [p for p in inspect.signature(Detector.__init__).parameters if p != "self"]
        params = {n: getattr(self, n) for n in names}
        for key in ("hidden", "columns", "image_size"):
            if params[key] is not None:
                params[key] = list(params[key])
        return params

    def __repr__(self) -> str:
        defaults = Detector().get_params()
        changed = {k: v for k, v in self.get_params().items() if v != defaults[k]}
        return f"Detector({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def _check_params(self) -> None:
        if self.window < 2 or self.stride < 1:
            raise ConfigError(f"window must be >= 2 and stride >= 1, got {self.window}, {self.stride}")
        for name in ("validation_fraction", "calibration_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 0.9:
                raise ConfigError(f"{name} must be in [0, 0.9), got {value}")
        if self.calibration_fraction <= 0:
            raise ConfigError("calibration_fraction must be > 0: thresholds need held-out data")
        if self.threshold not in THRESHOLD_METHODS:
            raise ConfigError(f"threshold method must be one of {THRESHOLD_METHODS}, got {self.threshold!r}")
        if self.model not in ("auto", *ARCHITECTURES):
            raise ConfigError(f"model must be one of {('auto', *ARCHITECTURES)}, got {self.model!r}")
        if self.false_alarms not in (None, "auto"):
            parse_rate(self.false_alarms)
        if self.smoothing is not None and self.smoothing < 1:
            raise ConfigError(f"smoothing must be >= 1 point, got {self.smoothing}")
        if not 0 < self.worst_pixels <= 1:
            raise ConfigError(f"worst_pixels must be in (0, 1], got {self.worst_pixels}")

    def _train_config(self, adapter: Modality) -> TrainConfig:
        lr, per_epoch = adapter.learning_rate, adapter.samples_per_epoch
        return TrainConfig(
            objective=self.objective,
            loss=self.loss,
            noise=self.noise,
            noise_level=self.noise_level,
            sparsity=self.sparsity,
            sparsity_weight=self.sparsity_weight,
            contractive_weight=self.contractive_weight,
            beta=self.beta,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate if self.learning_rate is not None else lr,
            patience=self.patience,
            samples_per_epoch=self.samples_per_epoch if self.samples_per_epoch is not None else per_epoch,
        )

    def _resolve_modality(self, data: Input) -> Modality:
        if self.modality is not None:
            return adapter_for(self.modality)
        return infer_adapter(data)

    # --- fitting ------------------------------------------------------------------------

    def fit(self, data: Input, labels: Sequence[int] | np.ndarray | None = None) -> Detector:
        """Train on reference data, then calibrate the threshold on a held-out part of it.

        `data`: a CSV/Parquet path or DataFrame (time series); an image folder, .npy/.npz,
        IDX .gz path or an (N, H, W[, C]) array (images). `labels` (optional, one 0/1 per
        row or image, 1 = anomaly): labelled anomalies are kept out of training and used to
        calibrate (`threshold="f1"`) and evaluate. Returns `self`.
        """
        self._check_params()
        adapter = self._resolve_modality(data)
        cfg = self._train_config(adapter)
        torch.manual_seed(self.seed)
        self.device_ = resolve_device(self.device)
        adapter.fit(self, data, labels, cfg)
        self.modality_ = adapter.name
        return self

    @property
    def adapter_(self) -> Modality:
        """The fitted detector's modality adapter: what differs between series and images."""
        self._check_fitted()
        return adapter_for(self.modality_)

    @property
    def level_free_columns(self) -> tuple[str, ...]:
        """Series columns whose level wandered on the held-out reference: the model sees them
        without their level, so they alarm on their shape, slopes and steps, never on their
        level alone (see `aemon.scoring.wandering_columns`)."""
        self._check_fitted()
        return tuple(self.schema_.columns[i] for i in self.model_.spec.level_free)

    def _build(
        self, adapter: Modality, shape: tuple[int, ...], output: str, level_free: tuple[int, ...] = ()
    ) -> Autoencoder:
        """The model for inputs of `shape` (called by the adapter's `fit`)."""
        spec = default_spec(
            adapter.default_arch if self.model == "auto" else self.model,
            adapter.name,
            shape,
            self.latent_dim,
            tuple(self.hidden) if self.hidden is not None else None,
            variational=self.objective == "vae",
            output=output,
            level_free=level_free,
        )
        return Autoencoder(spec)

    def _set_threshold(
        self,
        cal_scores: np.ndarray,
        cal_labels: np.ndarray | None,
        stamps: np.ndarray | None,
        training: tuple[np.ndarray, pd.Timedelta] | None = None,
    ) -> None:
        """`training`: (scores, duration) of the training span, whose events an event budget
        must hold on as well (see `hold_on_training_span`); labelled points already neutral."""
        normal_scores = cal_scores[~cal_labels] if cal_labels is not None else cal_scores
        if not len(normal_scores) and self.threshold != "f1":
            raise CalibrationError(
                f"every one of the {len(cal_scores)} held-out calibration records is labelled an "
                "anomaly: a threshold needs normal ones; give a reference with normal data at its "
                "end (series) or fewer labels, or raise calibration_fraction"
            )
        budget = self._event_budget(stamps)
        if budget is not None and stamps is not None:  # _event_budget needs timestamps for a budget
            duration = pd.Timedelta(stamps[-1] - stamps[0])
            # Never below the pointwise promise: merged events must not hide a flood of points.
            floor = conformal_quantile(normal_scores, self.target_fpr)
            # Labelled incidents are not normal: they neither set nor stretch the budget.
            if cal_labels is not None:
                cal_scores = np.where(cal_labels, np.median(normal_scores), cal_scores)
            thr = calibrate_event_budget(cal_scores, duration, budget, gap=self._gap(), floor=floor)
            if training is not None:
                thr = hold_on_training_span(thr, *training, budget, gap=self._gap())
            if not self._report_reference_outliers(cal_scores, stamps, thr, duration, budget, floor):
                self._report_unseen_held_out(thr)
        elif self.threshold == "f1":
            thr = calibrate_threshold(cal_scores, "f1", target_fpr=self.target_fpr, labels=cal_labels)
        else:
            thr = calibrate_threshold(normal_scores, self.threshold, target_fpr=self.target_fpr)
        self.false_alarms_ = budget
        self.threshold_info_ = thr
        self.threshold_ = thr.value
        self.calibration_scores_ = thin_scores(normal_scores)
        self.calibration_summary_ = summarize_scores(normal_scores)
        self.calibration_fpr_ = float(np.mean(normal_scores > thr.value))

    def _report_reference_outliers(
        self,
        cal_scores: np.ndarray,
        stamps: np.ndarray,
        thr: Threshold,
        duration: pd.Timedelta,
        budget: str,
        floor: float,
    ) -> bool:
        """Warn when a few held-out excursions, far above the rest, hold the threshold up: the
        user knows whether they were incidents (see `reference_outliers`). True if it warned."""
        spans = reference_outliers(cal_scores, self._gap())
        if not len(spans):
            return False
        keep = np.ones(len(cal_scores), dtype=bool)
        for a, b in spans:
            keep[a : b + 1] = False
        masked = np.where(keep, cal_scores, np.median(cal_scores))
        floor_without = min(floor, conformal_quantile(cal_scores[keep], self.target_fpr))
        without = calibrate_event_budget(masked, duration, budget, gap=self._gap(), floor=floor_without)
        lowest = max(without.value, thr.params.get("training_span_threshold", -np.inf))
        if lowest >= thr.value:
            return False
        when = [f"{pd.Timestamp(stamps[a])} to {pd.Timestamp(stamps[b])}" for a, b in spans]
        thr.params["reference_outliers"] = when
        thr.params["threshold_without_outliers"] = lowest
        daily = _daily_hours(stamps, spans)
        log.warning(
            "the held-out reference holds %d excursion(s) far above the rest (%s): they hold the "
            "threshold at %.4g instead of %.4g. %s",
            len(spans),
            "; ".join(when),
            thr.value,
            lowest,
            f"They come at the same time each day ({daily}): if that is a scheduled job, it is "
            "normal and the threshold must allow it; if they were incidents, mark them with "
            "labels= (CLI: --labels) and train again"
            if daily
            else "If they were incidents, mark them with labels= (CLI: --labels) or cut them from "
            "the reference, and train again",
        )
        return True

    def _report_unseen_held_out(self, thr: Threshold) -> None:
        """Warn when the held-out part needs a threshold far above what the same budget needs
        on the training span: not a few excursions but days unlike training (a trend, a range
        training never saw), so events will be rarer than the budget allows. Realistic sets,
        both fits: 1.0-3.7x; server-3 fitted as `aemon train` fits it (memory climbing past
        its training range in the held-out days): 27x, and 2 of 11 incidents found."""
        train = thr.params.get("training_span_threshold")
        if train is None or train <= 0 or thr.value <= UNSEEN_HELD_OUT_RATIO * train:
            return
        log.warning(
            "the held-out end of the reference scores far above its training part: the threshold "
            "is %.4g, %.0fx what the same budget needs on the training part (%.4g). Those days show "
            "what training did not (a trend, a new range?), so alarms will be rarer than the "
            "budget allows; a longer reference, or one whose training part covers them, gives a "
            "tighter threshold",
            thr.value,
            thr.value / train,
            train,
        )

    def _event_budget(self, stamps: np.ndarray | None) -> str | None:
        """The false-alarm budget that decides the threshold, or None for a pointwise one."""
        if self.false_alarms is None:
            return None
        if self.false_alarms == "auto":
            if stamps is None or self.threshold != "quantile":
                return None
            return DEFAULT_FALSE_ALARMS
        if stamps is None:
            raise ConfigError("false_alarms needs a time column to count events per time")
        return self.false_alarms

    def with_threshold(self, threshold: Threshold) -> Detector:
        """A copy of this fitted detector with another threshold (weights shared, read-only).

        The calibration false-positive rate is recomputed on the stored calibration scores.
        """
        self._check_fitted()
        other = copy.copy(self)
        other.threshold_info_ = threshold
        other.threshold_ = threshold.value
        other.calibration_fpr_ = float(np.mean(self.calibration_scores_ > threshold.value))
        return other

    def _gap(self) -> int:
        return self.event_gap if self.event_gap is not None else self.window // 2

    # --- scoring ------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this Detector is not fitted yet: call fit() or Detector.load()")

    def read(self, data: Input | Batch) -> Batch:
        """Read and validate a batch against the training schema, once: a CSV/Parquet file,
        folder of images, .npy/.npz/IDX file, DataFrame or array (a read batch is returned as
        is). The batch carries its records and the content hash of the file(s) read.
        Raises DataError (SchemaError) when it is unreadable or does not match."""
        adapter = self.adapter_
        if isinstance(data, SeriesBatch | ImageBatch):
            if not isinstance(data, adapter.batch_type):
                raise SchemaError(f"this {self.modality_} detector cannot score a {type(data).__name__}")
            return data
        return adapter.read(self, data)

    def score(self, data: Input | Batch, *, latent_sample: int = LATENT_SAMPLE, seed: int = 0) -> ScoreResult:
        """Score a batch (same input kinds as `fit`, or a batch from `read`): one score per
        point or image.

        Higher score = more anomalous; `is_anomaly` = score > `threshold_`. Time series also
        get `events` (flagged points merged, with per-column contributions); images get
        per-pixel `error_maps`. The result keeps the batch it read, and the latent codes of
        `latent_sample` records drawn with `seed` (for the drift profile), taken from the
        scoring pass itself. Raises SchemaError when the input does not match the training
        schema.
        """
        return self.adapter_.score(self, self.read(data), latent_sample, seed)

    def latent_sample(self, data: Input | Batch, *, size: int = LATENT_SAMPLE, seed: int = 0) -> LatentSample:
        """The latent codes of the records `score` would sample, without scoring (for the
        reference profile): the same draw, through the encoder alone."""
        return self.adapter_.latent_sample(self, self.read(data), size, seed)

    def encode(self, data: Input | Batch, *, max_samples: int | None = 5_000, seed: int = 0) -> np.ndarray:
        """Latent codes of the input's windows or images (N, latent_dim), for drift checks.

        At most `max_samples` records, drawn evenly (seeded) so the cost stays bounded.
        """
        batch = self.read(data)
        samples = self.adapter_.model_inputs(self, batch)
        if max_samples is not None:
            samples = samples[sample_rows(len(samples), max_samples, seed)]
        return encode(self.model_, samples, self.device_)

    # --- persistence --------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The JSON-ready description saved beside the weights (see `aemon.manifest`)."""
        return detector_manifest(self)

    def save(self, path: str | Path) -> Path:
        """Write the detector to a folder: `weights.pt` (state_dict) and `manifest.json`."""
        return save_detector(self, path)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> Detector:
        """Read a folder written by `save`; weights are loaded with `weights_only=True`."""
        return load_detector(cls, path, device=device)
