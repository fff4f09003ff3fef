"""`Modality`: what differs between time series and images, in one place per modality.

A detector holds one adapter (`Detector.adapter_`, from `aemon.modalities.adapter_for`);
every step that depends on the kind of records asks it instead of comparing modality names:

    read           a source into a validated batch (`SeriesBatch`, `ImageBatch`)
    fit            split, standardize, train and calibrate on reference data
    score          a batch into a `ScoreResult`, with a seeded latent sample
    model_inputs   the model's inputs of a batch (a series' windows, the images)
    profile_inputs the input columns of a drift profile (values, image statistics)
    plot_batch     the batch plot of a score result (and `holdout_figures`, a training run's)
    serve          the served model's input frame into scores (and its example and columns)
    block_size     how many neighbouring records are flagged together (a series' window)
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from aemon.errors import DataError

if TYPE_CHECKING:
    from aemon.detector import Detector, Input
    from aemon.results import Batch, LatentSample, ScoreResult
    from aemon.training import TrainConfig


class Modality(ABC):
    """One kind of record (a time-series point, an image); stateless, shared by detectors."""

    name: ClassVar[str]  # the modality's name in configs, manifests and the CLI
    batch_type: ClassVar[type]  # what `read` returns
    default_arch: ClassVar[str]  # the architecture of model="auto"
    learning_rate: ClassVar[float]  # Adam's step when the detector gives none
    samples_per_epoch: ClassVar[int | None]  # samples drawn per epoch when the detector gives none
    ordered: ClassVar[bool]  # records are in time order (a hold-out is the last of them)
    has_events: ClassVar[bool]  # flagged records merge into events (with a false-alarm budget)
    drift_test: ClassVar[str]  # Evidently's per-column test in a batch's drift report

    @abstractmethod
    def accepts(self, data: Input) -> bool:
        """Whether `data` looks like this modality's input (to infer the modality)."""

    @abstractmethod
    def fit(self, det: Detector, data: Input, labels: Any, cfg: TrainConfig) -> None:
        """Set the detector's fitted state from reference data (see `Detector.fit`)."""

    @abstractmethod
    def read_reference(self, path: Path) -> tuple[pd.DataFrame | np.ndarray, list[str] | None]:
        """Reference data in memory as `Detector.fit` takes it, and the record keys (None:
        row numbers)."""

    @abstractmethod
    def read(self, det: Detector, data: Input) -> Batch:
        """Read and validate `data` against the detector's training schema."""

    @abstractmethod
    def score(self, det: Detector, batch: Batch, latent_sample: int, seed: int) -> ScoreResult:
        """Score a batch; keep the codes of `latent_sample` records drawn with `seed`."""

    @abstractmethod
    def latent_sample(self, det: Detector, batch: Batch, size: int, seed: int) -> LatentSample:
        """The codes of the records `score` would sample, through the encoder alone."""

    @abstractmethod
    def model_inputs(self, det: Detector, batch: Batch) -> np.ndarray:
        """The model's inputs of a batch, one per record the encoder sees."""

    @abstractmethod
    def calibration_sample(
        self, det: Detector, batch: Batch, limit: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(record rows, model inputs) of at most `limit` reference records that the drift
        verdict is calibrated on: a series' most recent windows in time order, random images."""

    @abstractmethod
    def drift_slices(self, det: Detector) -> dict[str, Any]:
        """How the drift verdict's calibration slices the reference: `calibrate_drift`'s
        `contiguous`, `window` and `stride`."""

    @abstractmethod
    def profile_inputs(self, batch: Batch, rows: np.ndarray) -> pd.DataFrame:
        """The input columns of a drift profile at record `rows`."""

    @abstractmethod
    def plot_batch(self, result: ScoreResult, out: Path, max_images: int) -> None:
        """Draw a scored batch to the PNG `out`."""

    @abstractmethod
    def holdout_figures(
        self, det: Detector, reference: Input, res: ScoreResult, labels: Any
    ) -> dict[str, Any]:
        """A training run's figures of the scored held-out reference, by name."""

    @abstractmethod
    def serve(self, det: Detector, frame: pd.DataFrame) -> pd.DataFrame:
        """What the served (pyfunc) model returns for an input `frame`: one row per record."""

    @abstractmethod
    def example_frame(self, det: Detector, reference: Input | None) -> pd.DataFrame:
        """A small valid served-model input: the first records of `reference`, or made up."""

    @abstractmethod
    def input_columns(self, example: pd.DataFrame) -> list[tuple[str, str, bool]]:
        """The served model's input columns: (MLflow type, name, required)."""

    @abstractmethod
    def block_size(self, window: int) -> int:
        """Neighbouring records flagged together (the flag-rate test counts in such blocks)."""

    @abstractmethod
    def schema_to_dict(self, schema: Any) -> dict[str, Any]:
        """The training schema, JSON-ready (for the manifest)."""

    @abstractmethod
    def schema_from_dict(self, saved: dict[str, Any]) -> Any:
        """The training schema from `schema_to_dict`'s form."""

    def event_budget(self, det: Detector) -> str | None:
        """The false-alarm budget (events per time) a fitted detector promises, if any."""
        return det.false_alarms_ if self.has_events else None


def as_labels(labels: Any, n: int, what: str) -> np.ndarray | None:
    """`labels` (one 0/1 per record, 1 = anomaly) as booleans, or None."""
    if labels is None:
        return None
    y = np.asarray(labels)
    if y.shape != (n,):
        raise DataError(f"labels must hold one value per {what[:-1]} ({n}), got shape {y.shape}")
    return y.astype(bool)


def fingerprint(array: np.ndarray) -> str:
    """The training data's content hash, kept in the manifest."""
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# A served model's value column: any number (MLflow's own check turns away int64 columns
# declared double, as a CSV of counts reads; the detector checks the values itself).
ANY_NUMBER = "number"


def column_type(column: pd.Series) -> str:
    """The MLflow type name of a frame column."""
    kind = column.dtype.kind
    return {"b": "boolean", "i": "long", "u": "long", "f": "double", "M": "datetime"}.get(
        kind, "binary" if len(column) and isinstance(column.iloc[0], bytes) else "string"
    )
