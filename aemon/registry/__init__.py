"""The model registry, on MLflow: this package alone imports mlflow.

- `tracking`: MLflow access. Training runs, registered versions and aliases (`challenger`,
  `champion`), loading a version's detector, and the artifacts a version carries.
- `pyfunc`: the detector as an MLflow pyfunc model (`AemonModel`), what a version serves.
- `gate`: the quality gate, pure policy: does a new version replace the champion?
- `plots`: the figures of a training run (matplotlib; images reconstructed with the model).
- `cache`: per-process caches of loaded detectors and drift reference profiles.

Where: `MLFLOW_TRACKING_URI`, default `sqlite:///<AEMON_HOME>/mlflow.db` with artifacts under
`<AEMON_HOME>/mlartifacts` (see `aemon.config`).

Example:
    >>> version = log_training(det, name="cpu", data_source="ref.csv",  # doctest: +SKIP
    ...                        reference_data=holdout, labels=holdout_labels)
    >>> det, ref = load_detector("cpu")  # the champion  # doctest: +SKIP
"""

from __future__ import annotations

from aemon.registry.gate import AUROC_TOLERANCE, FPR_SLACK, GateDecision, quality_gate
from aemon.registry.pyfunc import AemonModel, input_example, predict_frame
from aemon.registry.tracking import (
    CHALLENGER,
    CHAMPION,
    DRIFT_REFERENCE,
    EXPERIMENT_NAME,
    ModelRef,
    ModelVersionInfo,
    RegisteredVersion,
    list_models,
    load_detector,
    load_drift_reference,
    log_training,
    parse_ref,
    promote_version,
    register_detector,
    resolve_ref,
)

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
