"""aemon: autoencoder anomaly detection for time series and images, with calibrated thresholds.

Score convention everywhere: higher = more anomalous; a record is flagged when
score > threshold.
"""

__version__ = "0.1.0"

from aemon.detector import Detector, ScoreResult
from aemon.errors import (
    AemonError,
    CalibrationError,
    ConfigError,
    DataError,
    ModelFormatError,
    ModelNotFoundError,
    NotFittedError,
    RegistryError,
    SchemaError,
    StoreError,
)

__all__ = [
    "AemonError",
    "CalibrationError",
    "ConfigError",
    "DataError",
    "Detector",
    "ModelFormatError",
    "ModelNotFoundError",
    "NotFittedError",
    "RegistryError",
    "SchemaError",
    "ScoreResult",
    "StoreError",
    "__version__",
]
