"""Registered versions kept on local disk, so that a one-off `aemon score` needs no MLflow.

Importing MLflow and opening its store costs about 1.5 s of CPU, more than scoring a small
batch. A version never changes (MLflow never reuses a version number, and the cache is keyed
by the version's run id too), so its detector and drift reference profile are kept under
`<AEMON_HOME>/cache/models/` once downloaded. Only the alias (`champion`) moves: on the
embedded SQLite store it is read with the standard library's sqlite3, read-only, from the
registry's own tables. Whenever that answer is not certain (another store, a schema this code
does not know, a locked file, a version not yet kept), `aemon.registry.tracking` asks MLflow,
the one source of truth, and keeps what it downloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from aemon import config
from aemon.errors import AemonError, ModelFormatError
from aemon.registry.cache import detectors, drift_references
from aemon.registry.refs import ModelRef, parse_ref

if TYPE_CHECKING:
    from aemon.detector import Detector

log = logging.getLogger(__name__)

DETECTOR_DIR = "detector"
DRIFT_FILE = "drift-reference.parquet"
NO_DRIFT_FILE = "drift-reference.none"  # the version was registered without a profile


def load_detector(ref: str, *, device: str = "auto") -> tuple[Detector, ModelRef]:
    """The detector of `NAME` (its champion), `NAME@alias` or `NAME/version`: from this
    process's cache, else from local disk, else downloaded from MLflow (and kept).
    Raises ModelNotFoundError naming the missing model, alias or version."""
    model_ref = resolve_locally(ref)
    if model_ref is not None:
        key = (config.mlflow_tracking_uri(), model_ref.name, model_ref.version, device)
        cached = detectors.get(key)
        if cached is not None:
            return cached, model_ref
        folder = version_dir(model_ref) / DETECTOR_DIR
        if folder.is_dir():
            detector = open_detector(folder, model_ref, device)
            detectors.put(key, detector)
            return detector, model_ref
    from aemon.registry import tracking

    return tracking.load_detector(ref, device=device)


def load_drift_reference(ref: ModelRef) -> pd.DataFrame | None:
    """The drift reference profile registered with `ref`, or None if it has none; from this
    process's cache, else from local disk, else from MLflow (and kept)."""
    key = (config.mlflow_tracking_uri(), ref.run_id or f"{ref.name}/{ref.version}")
    if key in drift_references:
        return drift_references.get(key)
    folder = version_dir(ref) if ref.run_id else None
    if folder is not None and (folder / DRIFT_FILE).is_file():
        # no Arrow thread pool: see aemon.drift.profiles.load_profile
        profile: pd.DataFrame | None = pd.read_parquet(folder / DRIFT_FILE, use_threads=False)
    elif folder is not None and (folder / NO_DRIFT_FILE).is_file():
        profile = None
    else:
        from aemon.registry import tracking

        return tracking.load_drift_reference(ref)
    drift_references.put(key, profile)
    return profile


def resolve_locally(ref: str) -> ModelRef | None:
    """The version `ref` names, read from the embedded SQLite registry without MLflow; None
    when it cannot be read that way for certain (MLflow then answers, with its errors)."""
    uri = config.mlflow_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        return None
    name, alias, version = parse_ref(ref)
    if alias is not None:
        query = (
            "SELECT v.version, v.run_id FROM registered_model_aliases a JOIN model_versions v "
            "ON v.name = a.name AND v.version = a.version "
            "WHERE a.name = ? AND a.alias = ? AND v.current_stage != 'Deleted_Internal'"
        )
        args: tuple[str, ...] = (name, alias)
    else:
        query = (
            "SELECT version, run_id FROM model_versions "
            "WHERE name = ? AND version = ? AND current_stage != 'Deleted_Internal'"
        )
        args = (name, str(version))
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=2) as db:
            rows = db.execute(query, args).fetchall()
    except sqlite3.Error as exc:  # locked, or a schema this code does not know
        log.debug("registry read without MLflow failed (%s); asking MLflow", exc)
        return None
    if len(rows) != 1 or not rows[0][1]:
        return None
    return ModelRef(name=name, version=str(rows[0][0]), alias=alias, run_id=str(rows[0][1]))


def version_dir(ref: ModelRef) -> Path:
    """The folder that keeps one version of one registry (store URI, name, version, run id)."""
    key = "\n".join((config.mlflow_tracking_uri(), ref.name, ref.version, str(ref.run_id)))
    return config.model_cache_dir() / hashlib.sha256(key.encode()).hexdigest()[:32]


def keep_detector(downloaded: Path, ref: ModelRef) -> None:
    """Keep a downloaded detector folder for `ref` (complete or not at all)."""
    if ref.run_id:
        _keep(ref, DETECTOR_DIR, lambda tmp: shutil.copytree(downloaded, tmp / DETECTOR_DIR))


def keep_drift_reference(profile: pd.DataFrame | None, ref: ModelRef) -> None:
    if not ref.run_id:
        return
    if profile is None:
        _keep(ref, NO_DRIFT_FILE, lambda tmp: (tmp / NO_DRIFT_FILE).touch())
    else:
        _keep(ref, DRIFT_FILE, lambda tmp: profile.to_parquet(tmp / DRIFT_FILE))


def _keep(ref: ModelRef, name: str, write: Callable[[Path], object]) -> None:
    """Write `name` into a scratch folder beside the version's folder, then rename it into
    place: a reader sees the whole thing or nothing, and concurrent writers cannot mix."""
    folder = version_dir(ref)
    if (folder / name).exists():
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "version.json").write_text(json.dumps({"name": ref.name, "version": ref.version}))
        with tempfile.TemporaryDirectory(dir=folder, prefix=".tmp-") as tmp_name:
            tmp = Path(tmp_name)
            write(tmp)
            with contextlib.suppress(OSError):  # another process kept it first
                (tmp / name).rename(folder / name)
    except OSError as exc:  # a cache that cannot be written only costs time
        log.warning("could not keep %s of %s on disk: %s", name, ref, exc)


def open_detector(folder: Path, ref: ModelRef, device: str) -> Detector:
    """`Detector.load`, with any failure to read the files (a tampered or truncated
    weights.pt raises pickle or torch errors) as one ModelFormatError line."""
    from aemon.detector import Detector

    try:
        return Detector.load(folder, device=device)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{ref}: the registered detector cannot be loaded: {exc}") from exc
    except AemonError:
        raise
    except Exception as exc:
        # Only the error's type: torch's text advises loading with weights_only=False, which
        # is exactly what must not be done with a file that someone changed.
        raise ModelFormatError(
            f"{ref}: the registered detector cannot be loaded, its files are corrupt or were "
            f"changed ({type(exc).__name__})"
        ) from exc
