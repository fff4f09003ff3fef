"""Values going into the anomaly database, checked and converted to plain column values:
anomaly rows, UTC times, JSON. Pure Python; a bad value is a `ConfigError` naming it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aemon.errors import ConfigError

SHA256 = re.compile(r"[0-9a-f]{64}")
ANOMALY_KEYS = ("record_key", "timestamp", "score", "threshold", "p_value", "details")
_ANOMALY_KEY_SET = frozenset(ANOMALY_KEYS)


def anomaly_values(index: int, row: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert one anomaly mapping into column values."""
    missing = [k for k in ("record_key", "score", "threshold") if k not in row]
    if missing:
        raise ConfigError(f"anomaly {index}: missing {', '.join(missing)}")
    key = str(row["record_key"])
    unknown = sorted(row.keys() - _ANOMALY_KEY_SET)
    if unknown:
        msg = (
            f"anomaly {index} ({key}): unknown keys {', '.join(unknown)}; expected {', '.join(ANOMALY_KEYS)}"
        )
        raise ConfigError(msg)
    if not key:
        raise ConfigError(f"anomaly {index}: empty record_key")
    values: dict[str, Any] = {"record_key": key}
    for name in ("score", "threshold"):
        value = float(row[name])
        if math.isnan(value):
            raise ConfigError(f"anomaly {index} ({key}): {name} is NaN")
        values[name] = value
    p_value = row.get("p_value")
    values["p_value"] = None if p_value is None or math.isnan(float(p_value)) else float(p_value)
    try:
        values["timestamp"] = as_utc(row.get("timestamp"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"anomaly {index} ({key}): bad timestamp: {exc}") from exc
    details = row.get("details")
    if details is not None and not isinstance(details, Mapping):
        raise ConfigError(f"anomaly {index} ({key}): details must be a mapping, got {details!r}")
    values["details"] = details if details is not None else {}  # the engine's serialiser: `dumps`
    return values


def as_utc(value: Any) -> datetime | None:
    """A timezone-aware UTC datetime from a datetime, ISO string, pandas or numpy time.

    Naive values are taken as UTC; None and NaT give None.
    """
    if value is None or value != value:  # NaT is not equal to itself
        return None
    if type(value) is datetime and value.tzinfo is UTC:  # the common case, kept cheap
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        value = value.to_pydatetime()
    elif getattr(getattr(value, "dtype", None), "kind", None) == "M":  # numpy.datetime64
        value = value.astype("datetime64[us]").item()
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def jsonable(value: Any, what: str) -> Any:
    """`value` as plain JSON types: numpy values unwrapped, NaN and infinities as null."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, what) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, what) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return jsonable(value.tolist(), what)
    raise ConfigError(f"{what}: cannot store a {type(value).__name__} as JSON")


# One encoder for every value: `json.dumps(value, allow_nan=False)` builds a new one per call,
# a third of the cost of encoding a flagged row's details.
_encode = json.JSONEncoder(allow_nan=False).encode


def dumps(value: Any) -> str:
    """The engine's JSON serialiser; values are usually clean already (see `jsonable`)."""
    try:
        return _encode(value)
    except (TypeError, ValueError):
        return _encode(jsonable(value, "JSON column"))


def check_sha256(value: str) -> None:
    if not isinstance(value, str) or not SHA256.fullmatch(value):
        raise ConfigError(f"content_sha256 must be 64 lowercase hex digits, got {value!r}")


def check_text(**values: str) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")


def utcnow() -> datetime:
    return datetime.now(UTC)
