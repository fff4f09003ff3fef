"""aemon: autoencoder anomaly detection for time series and images, with calibrated thresholds.

Score convention everywhere: higher = more anomalous; a record is flagged when
score > threshold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aemon.errors import (
    AemonError,
    CalibrationError,
    ConfigError,
    DataError,
    DriftError,
    ModelFormatError,
    ModelNotFoundError,
    NotFittedError,
    RegistryError,
    SchemaError,
    ScoringError,
    StoreError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from aemon.detector import Detector
    from aemon.results import ScoreResult


def __getattr__(name: str) -> Any:
    # Detector pulls in torch (~2 s): load it on first use so light commands stay fast.
    if name == "Detector":
        from aemon.detector import Detector

        return Detector
    if name == "ScoreResult":
        from aemon.results import ScoreResult

        return ScoreResult
    raise AttributeError(f"module 'aemon' has no attribute {name!r}")


__all__ = [
    "AemonError",
    "CalibrationError",
    "ConfigError",
    "DataError",
    "Detector",
    "DriftError",
    "ModelFormatError",
    "ModelNotFoundError",
    "NotFittedError",
    "RegistryError",
    "SchemaError",
    "ScoreResult",
    "ScoringError",
    "StoreError",
    "__version__",
]
