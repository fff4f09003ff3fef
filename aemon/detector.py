"""`Detector`: preprocessing + autoencoder + calibrated threshold, one object, one folder.

Follows the scikit-learn estimator contract: `__init__` only stores its arguments, `fit`
returns `self`, fitted state ends in `_`, and methods that need a fitted detector raise
`NotFittedError` before `fit`. Scores: higher = more anomalous; flagged when score > threshold.
"""

from __future__ import annotations

import copy
import hashlib
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
    describe_events,
    find_events,
    parse_rate,
    summarize_scores,
    thin_scores,
)
from aemon.data.images import ImageBatch, ImageSchema, is_image_source, load_images
from aemon.data.timeseries import (
    FILL_METHODS,
    FillMethod,
    SeriesBatch,
    SeriesSchema,
    is_timeseries_path,
    load_series,
    sliding_windows,
)
from aemon.errors import ConfigError, DataError, NotFittedError, SchemaError
from aemon.manifest import detector_manifest, load_detector, save_detector
from aemon.models import ARCHITECTURES, Autoencoder, default_spec
from aemon.results import Batch, LatentSample, ScoreResult, sample_rows
from aemon.scoring import (
    SeriesScoring,
    encode,
    fit_series_scoring,
    score_images,
    score_windows,
    series_point_scores,
)
from aemon.standardize import fit_scaling, seasonal_periods, standardize
from aemon.training import TrainConfig, resolve_device, train_autoencoder

log = logging.getLogger(__name__)

MODALITIES = ("timeseries", "image")
Input = str | Path | pd.DataFrame | np.ndarray
# Series alarms are events: the default promise is this many false events per unit of time,
# calibrated on held-out reference data (chosen by measurement, see the README).
DEFAULT_FALSE_ALARMS = "1/week"
LATENT_SAMPLE = 2_000  # records whose latent codes a score keeps for the drift profile


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

    def _train_config(self, modality: str) -> TrainConfig:
        # Images: a small conv learns a few hundred images as well with shorter epochs and a
        # larger step (MNIST one-class AUROC unchanged, a sixth of the training time).
        lr, per_epoch = (2e-3, 2048) if modality == "image" else (1e-3, None)
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

    def _resolve_modality(self, data: Input) -> str:
        if self.modality is not None:
            if self.modality not in MODALITIES:
                raise ConfigError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
            return self.modality
        if isinstance(data, pd.DataFrame):
            return "timeseries"
        if isinstance(data, np.ndarray):
            return "image" if data.ndim >= 3 else "timeseries"
        path = Path(data)
        if is_timeseries_path(path):
            return "timeseries"
        if is_image_source(path):
            return "image"
        raise DataError(
            "cannot tell the modality from this input; pass modality='timeseries' or 'image'",
            source=path,
        )

    # --- fitting ------------------------------------------------------------------------

    def fit(self, data: Input, labels: Sequence[int] | np.ndarray | None = None) -> Detector:
        """Train on reference data, then calibrate the threshold on a held-out part of it.

        `data`: a CSV/Parquet path or DataFrame (time series); an image folder, .npy/.npz,
        IDX .gz path or an (N, H, W[, C]) array (images). `labels` (optional, one 0/1 per
        row or image, 1 = anomaly): labelled anomalies are kept out of training and used to
        calibrate (`threshold="f1"`) and evaluate. Returns `self`.
        """
        self._check_params()
        modality = self._resolve_modality(data)
        cfg = self._train_config(modality)
        torch.manual_seed(self.seed)
        self.device_ = resolve_device(self.device)
        if modality == "timeseries":
            self._fit_series(data, labels, cfg)
        else:
            self._fit_images(data, labels, cfg)
        self.modality_ = modality
        return self

    def _arch(self, modality: str) -> str:
        if self.model == "auto":
            return "dense" if modality == "timeseries" else "conv"
        return self.model

    def _build(self, modality: str, shape: tuple[int, ...], output: str) -> Autoencoder:
        spec = default_spec(
            self._arch(modality),
            modality,
            shape,
            self.latent_dim,
            tuple(self.hidden) if self.hidden is not None else None,
            variational=self.objective == "vae",
            output=output,
        )
        return Autoencoder(spec)

    def _fit_series(self, data: Input, labels: Any, cfg: TrainConfig) -> None:
        if isinstance(data, np.ndarray):
            data = pd.DataFrame(data, columns=[f"x{i}" for i in range(data.shape[1])])
        schema, series = load_series(
            data, timestamp_col=self.timestamp_col, columns=self.columns, fill=self._fill()
        )
        n, w = len(series.values), self.window
        y = _as_labels(labels, n, "rows")
        n_cal = int(n * self.calibration_fraction)
        n_val = int(n * self.validation_fraction)
        n_train = n - n_cal - n_val
        if min(n_cal, n_train) < w or (n_val and n_val < w):
            raise DataError(
                f"the series has {n} rows: too short to split into training "
                f"({1 - self.calibration_fraction - self.validation_fraction:.0%}), validation "
                f"and calibration parts of at least one window ({w}) each"
            )
        train_rows = series.values[:n_train]
        self.schema_ = schema
        self.offset_, self.scale_ = fit_scaling(train_rows, schema.columns, min_max=self.loss == "bce")
        self.calendar_: tuple[float, ...] = ()
        if self.calendar and series.timestamps is not None:
            self.calendar_ = seasonal_periods(self._standardize(train_rows), series.timestamps[:n_train], w)
            if self.calendar_:
                log.info("seasonal cycles longer than the window: %s s", self.calendar_)
        z = self._standardize(series.values, series.timestamps)
        train_w = sliding_windows(z[:n_train], w)
        val_w = sliding_windows(z[n_train : n_train + n_val], w) if n_val else train_w[:0]
        if y is not None:  # labelled anomalies never enter training or validation
            keep = ~sliding_windows(y[:n_train, None], w).any(axis=(1, 2))
            train_w = train_w[keep]
            if n_val:
                val_w = val_w[~sliding_windows(y[n_train : n_train + n_val, None], w).any(axis=(1, 2))]
        output = "sigmoid" if self.loss == "bce" else "identity"
        n_inputs = len(schema.columns) + 2 * len(self.calendar_)
        self.model_ = self._build("timeseries", (w, n_inputs), output)
        self.training_ = train_autoencoder(
            self.model_,
            train_w,
            val_w,
            cfg,
            device=self.device_,
            seed=self.seed,
            progress=self.progress,
        )
        cal = slice(n_train + n_val, n)
        cal_err = self._series_errors([z[cal]])
        # Column scales from the training part, so the threshold is calibrated on errors
        # the scales never saw.
        train_err = self._series_errors([z[:n_train]])
        smoothing = self.smoothing if self.smoothing is not None else max(1, w // 4)
        self.series_scoring_: SeriesScoring | None = fit_series_scoring(train_err, smoothing)
        cal_scores, _ = series_point_scores(cal_err, self.series_scoring_)
        cal_labels = y[cal] if y is not None else None
        stamps = series.timestamps[cal] if series.timestamps is not None else None
        self._set_threshold(cal_scores, cal_labels, stamps)
        self.fingerprint_ = _fingerprint(series.values)
        self.n_train_records_ = n_train

    def _fit_images(self, data: Input, labels: Any, cfg: TrainConfig) -> None:
        want = None
        if self.image_size is not None:
            _, probe = _load_images(data, None)  # channels from the data, size from the argument
            want = ImageSchema(int(self.image_size[0]), int(self.image_size[1]), probe.images.shape[1])
        schema, batch = _load_images(data, want)
        n = len(batch.images)
        y = _as_labels(labels, n, "images")
        rng = np.random.default_rng(self.seed)
        normal = np.flatnonzero(~y) if y is not None else np.arange(n)
        normal = rng.permutation(normal)
        n_cal = max(1, int(len(normal) * self.calibration_fraction))
        n_val = int(len(normal) * self.validation_fraction)
        if len(normal) - n_cal - n_val < 2:
            raise DataError(f"{n} images are too few to train, validate and calibrate")
        cal_idx = np.sort(np.r_[normal[:n_cal], np.flatnonzero(y) if y is not None else []]).astype(int)
        val_idx = np.sort(normal[n_cal : n_cal + n_val])
        train_idx = np.sort(normal[n_cal + n_val :])
        self.schema_ = schema
        self.offset_, self.scale_ = np.zeros(1), np.ones(1)
        output = "sigmoid"  # pixels live in [0, 1]
        shape = (schema.channels, schema.height, schema.width)
        self.model_ = self._build("image", shape, output)
        images = batch.images
        self.training_ = train_autoencoder(
            self.model_,
            images[train_idx],
            images[val_idx],
            cfg,
            device=self.device_,
            seed=self.seed,
            progress=self.progress,
        )
        cal_scores, _, _ = score_images(
            self.model_, images[cal_idx], self.loss, self.device_, self.worst_pixels, keep_maps=False
        )
        self.series_scoring_ = None
        self.calendar_ = ()
        self._set_threshold(cal_scores, y[cal_idx] if y is not None else None, None)
        self.fingerprint_ = _fingerprint(images)
        self.n_train_records_ = len(train_idx)

    def _set_threshold(
        self, cal_scores: np.ndarray, cal_labels: np.ndarray | None, stamps: np.ndarray | None
    ) -> None:
        normal_scores = cal_scores[~cal_labels] if cal_labels is not None else cal_scores
        budget = self._event_budget(stamps)
        if budget is not None and stamps is not None:  # _event_budget needs timestamps for a budget
            duration = pd.Timedelta(stamps[-1] - stamps[0])
            # Never below the pointwise promise: merged events must not hide a flood of points.
            floor = conformal_quantile(normal_scores, self.target_fpr)
            thr = calibrate_event_budget(cal_scores, duration, budget, gap=self._gap(), floor=floor)
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

    def _fill(self) -> FillMethod | None:
        if self.fill is not None and self.fill not in FILL_METHODS:
            raise ConfigError(f"fill must be one of {FILL_METHODS}, got {self.fill!r}")
        return self.fill  # type: ignore[return-value]

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

    def _standardize(self, values: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        """The model's input rows: standardized values, then the calendar phases (if any)."""
        return standardize(values, self.offset_, self.scale_, getattr(self, "calendar_", ()), timestamps)

    def _windows(self, series: Any) -> np.ndarray:
        """The model's input windows of a loaded series (a view: calendar phases included)."""
        return sliding_windows(self._standardize(series.values, series.timestamps), self.window, self.stride)

    def _as_series_input(self, data: Input) -> tuple[str | Path | pd.DataFrame, SeriesSchema]:
        """A bare (rows, columns) array holds values only: read it without a time column."""
        if isinstance(data, np.ndarray):
            columns = list(self.schema_.columns)
            if data.ndim != 2 or data.shape[1] != len(columns):
                raise SchemaError(f"expected an array of shape (n, {len(columns)}), got {data.shape}")
            return pd.DataFrame(data, columns=columns), SeriesSchema(None, tuple(columns))
        return data, self.schema_

    def _window_ends(self, n_rows: int) -> np.ndarray:
        """The last row of each window on the window/stride grid of a series of `n_rows`."""
        return np.arange(self.window - 1, n_rows, self.stride)

    def read(self, data: Input | Batch) -> Batch:
        """Read and validate a batch against the training schema, once: a CSV/Parquet file,
        folder of images, .npy/.npz/IDX file, DataFrame or array (a read batch is returned as
        is). The batch carries its records and the content hash of the file(s) read.
        Raises DataError (SchemaError) when it is unreadable or does not match."""
        self._check_fitted()
        if isinstance(data, SeriesBatch | ImageBatch):
            if isinstance(data, SeriesBatch) != (self.modality_ == "timeseries"):
                raise SchemaError(f"this {self.modality_} detector cannot score a {type(data).__name__}")
            return data
        if self.modality_ == "timeseries":
            source, schema = self._as_series_input(data)
            return load_series(source, schema, fill=self._fill())[1]
        return _load_images(data, self.schema_)[1]

    def _series_errors(self, chunks: Any) -> np.ndarray:
        """Per-point errors of the value columns (calendar inputs are context, not scored)."""
        errors, _ = score_windows(self.model_, chunks, self.window, self.stride, self.loss, self.device_)
        return errors[:, : len(self.schema_.columns)]

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
        batch = self.read(data)
        if isinstance(batch, SeriesBatch):
            return self._score_series(batch, latent_sample, seed)
        return self._score_images(batch, latent_sample, seed)

    def _score_series(self, batch: SeriesBatch, latent_sample: int, seed: int) -> ScoreResult:
        z = self._standardize(batch.values, batch.timestamps)
        ends = self._window_ends(len(z))
        rows = ends[sample_rows(len(ends), latent_sample, seed)]
        errors, codes = score_windows(
            self.model_,
            iter([z]),
            self.window,
            self.stride,
            self.loss,
            self.device_,
            sample_starts=rows - (self.window - 1),
        )
        scores, col_err = series_point_scores(errors[:, : len(self.schema_.columns)], self.series_scoring_)
        flags = scores > self.threshold_
        columns = self.schema_.columns
        events = describe_events(find_events(flags, self._gap()), scores, col_err, columns, batch.timestamps)
        return ScoreResult(
            scores=scores,
            is_anomaly=flags,
            calibration_scores=self.calibration_scores_,
            threshold=self.threshold_,
            timestamps=batch.timestamps,
            column_errors=col_err,
            columns=columns,
            events=events,
            batch=batch,
            latents=LatentSample(rows, codes),
        )

    def _score_images(self, batch: ImageBatch, latent_sample: int, seed: int) -> ScoreResult:
        rows = sample_rows(len(batch.images), latent_sample, seed)
        scores, maps, codes = score_images(
            self.model_, batch.images, self.loss, self.device_, self.worst_pixels, sample=rows
        )
        return ScoreResult(
            image_keys=batch.keys,
            scores=scores,
            is_anomaly=scores > self.threshold_,
            calibration_scores=self.calibration_scores_,
            threshold=self.threshold_,
            error_maps=maps,
            batch=batch,
            latents=LatentSample(rows, codes),
        )

    def latent_sample(self, data: Input | Batch, *, size: int = LATENT_SAMPLE, seed: int = 0) -> LatentSample:
        """The latent codes of the records `score` would sample, without scoring (for the
        reference profile): the same draw, through the encoder alone."""
        batch = self.read(data)
        if isinstance(batch, SeriesBatch):
            ends = self._window_ends(batch.n_records)
            pick = sample_rows(len(ends), size, seed)
            return LatentSample(ends[pick], encode(self.model_, self._windows(batch)[pick], self.device_))
        rows = sample_rows(batch.n_records, size, seed)
        return LatentSample(rows, encode(self.model_, batch.images[rows], self.device_))

    def encode(self, data: Input | Batch, *, max_samples: int | None = 5_000, seed: int = 0) -> np.ndarray:
        """Latent codes of the input's windows or images (N, latent_dim), for drift checks.

        At most `max_samples` records, drawn evenly (seeded) so the cost stays bounded.
        """
        batch = self.read(data)
        samples = self._windows(batch) if isinstance(batch, SeriesBatch) else batch.images
        if max_samples is not None:
            samples = samples[sample_rows(len(samples), max_samples, seed)]
        return encode(self.model_, samples, self.device_)

    # --- persistence --------------------------------------------------------------------
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


def _load_images(data: Input, schema: ImageSchema | None) -> tuple[ImageSchema, ImageBatch]:
    if isinstance(data, pd.DataFrame):
        raise DataError("images are given as a folder, .npy/.npz, IDX .gz file or array, not a DataFrame")
    return load_images(data, schema)


def _as_labels(labels: Any, n: int, what: str) -> np.ndarray | None:
    if labels is None:
        return None
    y = np.asarray(labels)
    if y.shape != (n,):
        raise DataError(f"labels must hold one value per {what[:-1]} ({n}), got shape {y.shape}")
    return y.astype(bool)


def _fingerprint(array: np.ndarray) -> str:
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
