"""The model registry, on MLflow: this package alone imports mlflow.

- `tracking`: MLflow access. Training runs, registered versions and aliases (`challenger`,
  `champion`), loading a version's detector, and the artifacts a version carries.
- `local`: versions kept on local disk once downloaded, so that scoring a batch with a kept
  version needs no MLflow (`load_detector`, `load_drift_reference` start there).
- `refs`: how a version is named (`ModelRef`, `parse_ref`).
- `pyfunc`: the detector as an MLflow pyfunc model (`AemonModel`), what a version serves.
- `gate`: the quality gate, pure policy: does a new version replace the champion?
- `plots`: the figures of a training run (matplotlib; images reconstructed with the model).
- `cache`: per-process caches of loaded detectors and drift reference profiles.

The names below are imported on first use: `from aemon import registry` costs nothing until
a name is used, and scoring with a kept version never imports MLflow.

Where: `MLFLOW_TRACKING_URI`, default `sqlite:///<AEMON_HOME>/mlflow.db` with artifacts under
`<AEMON_HOME>/mlartifacts` (see `aemon.config`).

Example:
    >>> version = log_training(det, name="cpu", data_source="ref.csv",  # doctest: +SKIP
    ...                        reference_data=holdout, labels=holdout_labels)
    >>> det, ref = load_detector("cpu")  # the champion  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aemon.registry.refs import CHALLENGER, CHAMPION, ModelRef, parse_ref

if TYPE_CHECKING:
    from aemon.registry.gate import AUROC_TOLERANCE, FPR_SLACK, GateDecision, quality_gate
    from aemon.registry.local import load_detector, load_drift_reference
    from aemon.registry.pyfunc import AemonModel, input_example, predict_frame
    from aemon.registry.tracking import (
        DRIFT_REFERENCE,
        EXPERIMENT_NAME,
        ModelVersionInfo,
        RegisteredVersion,
        list_models,
        log_training,
        promote_version,
        register_detector,
        resolve_ref,
    )

_LAZY = {
    "aemon.registry.gate": ("AUROC_TOLERANCE", "FPR_SLACK", "GateDecision", "quality_gate"),
    "aemon.registry.local": ("load_detector", "load_drift_reference"),
    "aemon.registry.pyfunc": ("AemonModel", "input_example", "predict_frame"),
    "aemon.registry.tracking": (
        "DRIFT_REFERENCE",
        "EXPERIMENT_NAME",
        "ModelVersionInfo",
        "RegisteredVersion",
        "list_models",
        "log_training",
        "promote_version",
        "register_detector",
        "resolve_ref",
    ),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "AUROC_TOLERANCE",
    "CHALLENGER",
    "CHAMPION",
    "DRIFT_REFERENCE",
    "EXPERIMENT_NAME",
    "FPR_SLACK",
    "AemonModel",
    "GateDecision",
    "ModelRef",
    "ModelVersionInfo",
    "RegisteredVersion",
    "input_example",
    "list_models",
    "load_detector",
    "load_drift_reference",
    "log_training",
    "parse_ref",
    "predict_frame",
    "promote_version",
    "quality_gate",
    "register_detector",
    "resolve_ref",
]
