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
├── StoreError           anomaly database problem
├── DriftError           a drift report cannot be computed
└── ScoringError         batches could not be scored (each batch's own error is in the database)
```
"""

from __future__ import annotations

import re
from pathlib import Path

# Longest problem text an error carries: a bad file's content can reach a message (a CSV
# line in a parse error, a cell value), and it must not be stored or printed at length.
MAX_PROBLEM_CHARS = 500


def safe_text(text: object, limit: int | None = None) -> str:
    """`text` safe to print and store: control and format characters (terminal escape
    sequences, NUL, bidi overrides) written as `\\xNN` / `\\uNNNN` escapes, and cut to `limit`
    characters with an ellipsis."""
    out = []
    for char in str(text):
        if not char.isprintable() and char != " ":
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    safe = "".join(out)
    if limit is not None and len(safe) > limit:
        safe = safe[: max(limit - 1, 0)] + "\u2026"
    return safe


def redact_url(text: str) -> str:
    """`text` (a URL, or a message quoting URLs) with the password of every URL's user part
    written as `***`: a database, MLflow or webhook URL shown in a message, table or log."""
    return re.sub(r"\b([A-Za-z][\w+.-]*://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)


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
        self.problem = safe_text(problem, MAX_PROBLEM_CHARS)
        self.source = safe_text(source) if source is not None else None
        self.record = record
        where = []
        if self.source is not None:
            where.append(self.source)
        if record is not None:
            where.append(f"record {safe_text(record, 100)}")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        super().__init__(prefix + self.problem)


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


class DriftError(AemonError):
    """A drift report cannot be computed from what Evidently returned."""


class ScoringError(AemonError):
    """One or more batches could not be scored; each batch's own error is recorded with it."""
