"""The saved form of a `Detector`: a folder with `weights.pt` (the model's state dict, read
with `weights_only=True`) and `manifest.json` (everything else: parameters, schema,
preprocessing, threshold, calibration, training), format FORMAT_VERSION."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aemon import __version__
from aemon.calibration import Threshold
from aemon.errors import ModelFormatError
from aemon.modalities import adapter_for
from aemon.models import Autoencoder, ModelSpec
from aemon.scoring import SeriesScoring
from aemon.training import resolve_device

if TYPE_CHECKING:
    from aemon.detector import Detector

FORMAT_VERSION = 1
WEIGHTS_FILE, MANIFEST_FILE = "weights.pt", "manifest.json"
# What a corrupt or incomplete detector folder raises while it is read.
LOAD_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, OSError)


def detector_manifest(det: Detector) -> dict[str, Any]:
    """The JSON-ready description saved beside the weights."""
    det._check_fitted()
    thr = det.threshold_info_
    return {
        "format_version": FORMAT_VERSION,
        "aemon_version": __version__,
        "modality": det.modality_,
        "params": det.get_params(),
        "schema": det.adapter_.schema_to_dict(det.schema_),
        "model": det.model_.spec.to_dict(),
        "preprocessing": {"offset": det.offset_.tolist(), "scale": det.scale_.tolist()},
        "threshold": {
            "value": thr.value,
            "method": thr.method,
            "params": thr.params,
            "false_alarms": det.false_alarms_,
        },
        "scoring": det.series_scoring_.to_dict() if det.series_scoring_ is not None else None,
        "calendar": list(getattr(det, "calendar_", ())),
        "calibration": {
            "scores": det.calibration_scores_.tolist(),
            "summary": det.calibration_summary_,
            "fpr": det.calibration_fpr_,
        },
        "training": {
            "fingerprint": det.fingerprint_,
            "n_train_records": det.n_train_records_,
            "best_epoch": det.training_.best_epoch,
            "best_val_loss": det.training_.best_val_loss,
            "stopped_early": det.training_.stopped_early,
            "history": det.training_.history,
        },
    }


def save_detector(det: Detector, path: str | Path) -> Path:
    """Write the detector to a folder: `weights.pt` (state_dict) and `manifest.json`."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = detector_manifest(det)
    torch.save(det.model_.state_dict(), folder / WEIGHTS_FILE)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, default=str))
    return folder


def load_detector(cls: type[Detector], path: str | Path, *, device: str = "auto") -> Detector:
    """Read a folder written by `save`; weights are loaded with `weights_only=True`."""
    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
    except FileNotFoundError as exc:
        raise ModelFormatError(f"{folder}: no {MANIFEST_FILE}; not a saved Detector") from exc
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{folder / MANIFEST_FILE}: invalid JSON ({exc})") from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{folder}: detector format version {version!r}; this aemon reads {FORMAT_VERSION}"
        )
    try:
        params = dict(manifest["params"])
        params.setdefault("worst_pixels", 1.0)  # saved before it existed: scored by the mean
        params["device"] = device
        det = cls(**params)
        det.modality_ = manifest["modality"]
        det.device_ = resolve_device(device)
        det.schema_ = adapter_for(det.modality_).schema_from_dict(manifest["schema"])
        det.model_ = Autoencoder(ModelSpec.from_dict(manifest["model"]))
        try:
            state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, EOFError, RuntimeError) as exc:
            # Only the error's type: torch's text advises weights_only=False, exactly what
            # must not be done with a file that someone changed.
            raise ModelFormatError(
                f"{folder / WEIGHTS_FILE}: not a readable state dict, corrupt or changed "
                f"({type(exc).__name__})"
            ) from exc
        det.model_.load_state_dict(state)
        det.model_.to(det.device_).eval()
        det.offset_ = np.asarray(manifest["preprocessing"]["offset"], dtype=np.float64)
        det.scale_ = np.asarray(manifest["preprocessing"]["scale"], dtype=np.float64)
        t = manifest["threshold"]
        det.threshold_info_ = Threshold(float(t["value"]), t["method"], t["params"])
        det.threshold_ = float(t["value"])
        # Saved before events were the default: the budget was the false_alarms argument.
        det.false_alarms_ = t.get("false_alarms", params.get("false_alarms"))
        scoring = manifest.get("scoring")  # absent before normalised, smoothed scores
        det.series_scoring_ = SeriesScoring.from_dict(scoring) if scoring else None
        det.calendar_ = tuple(float(p) for p in manifest.get("calendar", []))
        cal = manifest["calibration"]
        det.calibration_scores_ = np.asarray(cal["scores"], dtype=np.float64)
        det.calibration_summary_ = cal["summary"]
        det.calibration_fpr_ = cal["fpr"]
        tr = manifest["training"]
        from aemon.training import TrainResult

        det.training_ = TrainResult(tr["history"], tr["best_epoch"], tr["best_val_loss"], tr["stopped_early"])
        det.fingerprint_ = tr["fingerprint"]
        det.n_train_records_ = tr["n_train_records"]
    except LOAD_ERRORS as exc:
        raise ModelFormatError(f"{folder}: corrupt or incomplete detector ({exc})") from exc
    return det
