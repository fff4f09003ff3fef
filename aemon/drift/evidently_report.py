"""Evidently's full drift report (evidently.html/.json, about 5 MB) and its per-column tests.

The only module that imports Evidently, and lazily inside `evidently_columns`
(`import evidently` takes ~5 s), so importing `aemon.drift` stays cheap.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aemon.config import apply_environment_defaults
from aemon.drift.columns import column_group
from aemon.errors import DriftError

log = logging.getLogger(__name__)

EVIDENTLY_HTML, EVIDENTLY_JSON = "evidently.html", "evidently.json"  # on drift or when asked
AUTO_KS_MAX_ROWS = 1_000  # "auto" drift test: K-S up to this many rows, Wasserstein above
_UNSAFE_NAME_CHARS = re.compile(r"[^\w .()-]")


def evidently_columns(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out: Path,
    method: str,
    threshold: float | None,
    drift_share: float,
) -> dict[str, dict[str, Any]]:
    """Write Evidently's full report (evidently.html/.json) into `out`; returns its
    per-column tests: {"drifted", "stat_test", "score", "threshold", "group"} per column."""
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
    return {name: {**by_safe[s], "group": column_group(name)} for name, s in zip(names, safe, strict=True)}


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
