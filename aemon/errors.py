"""The exceptions aemon raises. Catch `AemonError` to catch them all.

```
AemonError
├── ConfigError          an argument or setting has an invalid value (also ValueError)
├── DataError            input data is unreadable or invalid: names the file, record and problem
│   └── SchemaError      input does not match the schema the detector was trained on
├── NotFittedError       a Detector method needs `fit` first
├── CalibrationError     a threshold cannot be calibrated from the data given
├── ModelFormatError     a saved detector folder is missing, corrupt or of an unknown version
├── RegistryError        MLflow registry problem
│   └── ModelNotFoundError   the model, version or alias asked for does not exist
└── StoreError           anomaly database problem
```
"""

from __future__ import annotations

from pathlib import Path


class AemonError(Exception):
    """Base class of every error aemon raises on purpose."""


class ConfigError(AemonError, ValueError):
    """An argument or setting has an invalid value."""


class DataError(AemonError, ValueError):
    """Input data is unreadable or invalid.

    `source` is the file (or "<DataFrame>"/"<array>"), `record` the row index, timestamp or
    image key concerned (when one is), and `problem` what is wrong.
    """

    def __init__(self, problem: str, *, source: str | Path | None = None, record: object = None):
        self.problem = problem
        self.source = str(source) if source is not None else None
        self.record = record
        where = []
        if self.source is not None:
            where.append(self.source)
        if record is not None:
            where.append(f"record {record}")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        super().__init__(prefix + problem)


class SchemaError(DataError):
    """Input does not match the schema (columns, image shape) the detector was trained on."""


class NotFittedError(AemonError, AttributeError):
    """A method that needs a fitted detector was called before `fit`."""


class CalibrationError(AemonError, ValueError):
    """A threshold cannot be calibrated from the data given."""


class ModelFormatError(AemonError):
    """A saved detector is missing, corrupt, or written by an incompatible version."""


class RegistryError(AemonError):
    """A problem with the MLflow tracking server or model registry."""


class ModelNotFoundError(RegistryError, LookupError):
    """The registered model, version or alias asked for does not exist."""


class StoreError(AemonError):
    """A problem with the anomaly database."""
