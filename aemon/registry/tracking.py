"""MLflow access: training runs, registered versions and aliases, and the artifacts a
version carries (its detector, its drift reference profile, the drift reports of batches).

A training run logs its parameters, loss curves, threshold, held-out metrics and plots, and
the detector folder as an MLflow pyfunc model registered as `NAME`. Every new version gets
the alias `challenger`; it also becomes `champion` when it passes the quality gate
(`aemon.registry.gate`). MLflow's exceptions leave this module as `RegistryError`.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from aemon.config import (
    apply_environment_defaults,
    check_model_name,
    mlflow_artifact_root,
    mlflow_tracking_uri,
)
from aemon.detector import Detector, Input
from aemon.errors import (
    AemonError,
    ModelFormatError,
    ModelNotFoundError,
    RegistryError,
    redact_url,
)
from aemon.evaluation import evaluate_detector, evaluate_result
from aemon.registry.cache import detectors, drift_references
from aemon.registry.gate import quality_gate
from aemon.registry.local import keep_detector, keep_drift_reference, open_detector
from aemon.registry.plots import training_figures
from aemon.registry.pyfunc import (
    DETECTOR_ARTIFACT,
    MODEL_ARTIFACT,
    MODEL_CODE,
    input_example,
    model_signature,
    pip_requirements,
    predict_frame,
)
from aemon.registry.refs import CHALLENGER, CHAMPION, ModelRef, parse_ref
from aemon.standardize import SEASON_NAMES

log = logging.getLogger(__name__)

EXPERIMENT_NAME = "aemon"
TAG = "aemon."  # prefix of every tag aemon writes
MAX_PARAM_CHARS = 500


# --- value classes --------------------------------------------------------------------------


@dataclass
class RegisteredVersion:
    """What `log_training` registered and what the quality gate decided."""

    name: str
    version: str
    run_id: str
    aliases: list[str]
    promoted: bool
    reason: str  # the gate's reason, for people
    threshold: float
    threshold_method: str
    calibration_fpr: float
    target_fpr: float | None  # None when the threshold does not promise a pointwise FPR
    metrics: dict[str, float] = field(default_factory=dict)  # as logged to the run
    evaluation: dict[str, float] = field(default_factory=dict)  # held-out, `evaluate_detector`
    tracking_uri: str = ""
    false_alarms: str | None = None  # the false-alarm budget promised (series events), if any
    cycles: tuple[str, ...] = ()  # series: the calendar cycles given to the model ("day", "week")
    level_free: tuple[str, ...] = ()  # series: columns the model sees without their level

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class ModelVersionInfo:
    """One row of `list_models`."""

    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    created: datetime
    gate: str | None  # promoted | rejected | forced (None: not decided by aemon)
    threshold: float | None
    data_source: str | None = None  # what it was trained on, or "recalibrated from NAME/V ..."


# --- connection -----------------------------------------------------------------------------


def _client() -> tuple[MlflowClient, str]:
    """A client on the configured store; the fluent API is pointed at the same URI."""
    apply_environment_defaults()  # telemetry off for library callers too (checked per event)
    uri = mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri), redact_url(uri)  # the second one is for messages


def _is_local_store(uri: str) -> bool:
    """SQLite has nowhere to keep artifacts but a folder: aemon picks it (never `./mlruns`)."""
    return uri.startswith("sqlite:")


@contextmanager
def _registry_errors(action: str, uri: str) -> Iterator[None]:
    """Turn MLflow's exceptions into one RegistryError line that says what aemon was doing."""
    try:
        yield
    except MlflowException as exc:
        unreachable = _UNREACHABLE.search(exc.message)
        if unreachable is not None:  # MLflow's message nests three exceptions' texts
            raise RegistryError(
                f"{action} failed: the MLflow tracking server at {redact_url(uri)} cannot be reached "
                f"({redact_url(unreachable.group(1).strip().rstrip('.'))})"
            ) from exc
        raise RegistryError(f"{action} failed ({redact_url(uri)}): {redact_url(exc.message)}") from exc


# What MLflow's HTTP client says when a server does not answer: a refused or failed
# connection, or a read that timed out.
_UNREACHABLE = re.compile(r"Max retries exceeded.*?(?:\[Errno -?\d+\] |(?=Read timed out))([^\"')(]+)")


def _experiment_id(client: MlflowClient, uri: str) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT_NAME)
    if exp is not None:
        return str(exp.experiment_id)
    location = mlflow_artifact_root().as_uri() if _is_local_store(uri) else None
    try:
        return str(client.create_experiment(EXPERIMENT_NAME, artifact_location=location))
    except MlflowException:  # created meanwhile by another process
        exp = client.get_experiment_by_name(EXPERIMENT_NAME)
        if exp is None:
            raise
        return str(exp.experiment_id)


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST"


# --- logging a training run -------------------------------------------------------------------


def _params(detector: Detector, data_source: str) -> dict[str, str]:
    spec = detector.model_.spec
    params: dict[str, Any] = {
        **detector.get_params(),
        "modality": detector.modality_,
        "arch": spec.arch,
        "latent_dim": spec.latent_dim,
        "hidden": list(spec.hidden),
        "input_shape": list(spec.input_shape),
        "threshold_method": detector.threshold_info_.method,
        "device_used": str(detector.device_),
        "data_source": data_source,
        "n_train_records": detector.n_train_records_,
        "fingerprint": detector.fingerprint_,
    }
    params.pop("progress", None)
    params.pop("device", None)
    return {k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()}


def _metrics(detector: Detector, evaluation: Mapping[str, float]) -> dict[str, float]:
    metrics = {
        "threshold": detector.threshold_,
        "calibration_fpr": detector.calibration_fpr_,
        "best_val_loss": detector.training_.best_val_loss,
        "best_epoch": float(detector.training_.best_epoch),
        "n_calibration": float(len(detector.calibration_scores_)),
    }
    metrics.update({f"holdout_{k}": float(v) for k, v in evaluation.items()})
    return {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}


def log_training(
    detector: Detector,
    *,
    name: str,
    data_source: str,
    evaluation: Mapping[str, float] | None = None,
    promote: bool = False,
    reference_data: Input | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    drift_reference: pd.DataFrame | None = None,
) -> RegisteredVersion:
    """Log a fitted detector's training run, register it as a new version of `name`
    (alias `challenger`), and make it `champion` when it passes `quality_gate`.

    `reference_data` (with optional 0/1 `labels`, 1 = anomaly) is data held out from `fit`:
    the new version and the current champion are both scored on it, and it feeds the plots
    and the input example. `evaluation` defaults to `evaluate_detector` on it. `promote`
    forces the new version to champion. `drift_reference` (from `aemon.drift.reference_profile`)
    is stored with the run for the drift reports of batches this version scores.
    """
    version = register_detector(
        detector,
        name=name,
        data_source=data_source,
        evaluation=evaluation,
        reference_data=reference_data,
        labels=labels,
        drift_reference=drift_reference,
    )
    return promote_version(version, reference_data=reference_data, labels=labels, force=promote)


def register_detector(
    detector: Detector,
    *,
    name: str,
    data_source: str,
    evaluation: Mapping[str, float] | None = None,
    reference_data: Input | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    drift_reference: pd.DataFrame | None = None,
) -> RegisteredVersion:
    """Log the run and register a new version with alias `challenger`, after a load test.

    The champion is left alone: `promote_version` decides that.
    """
    manifest = detector.manifest()  # raises NotFittedError before anything is logged
    check_model_name(name)
    res = detector.score(reference_data) if reference_data is not None else None
    if evaluation is None and res is not None:
        evaluation = evaluate_result(detector, res, labels)
    evaluation = dict(evaluation or {})
    client, uri = _client()
    with (
        tempfile.TemporaryDirectory(prefix="aemon-register-") as tmp,
        _registry_errors(f"registering model {name!r}", uri),
    ):
        exp_id = _experiment_id(client, uri)
        folder = detector.save(Path(tmp) / DETECTOR_ARTIFACT)
        code = Path(tmp) / "aemon_model.py"
        code.write_text(MODEL_CODE)
        example = input_example(detector, reference_data)
        expected = predict_frame(detector, example)
        metrics = _metrics(detector, evaluation)
        run_tags = {
            f"{TAG}model_name": name,
            f"{TAG}data_source": data_source[:5000],
            f"{TAG}modality": detector.modality_,
        }
        nested = mlflow.active_run() is not None
        with mlflow.start_run(
            experiment_id=exp_id, run_name=f"train-{name}", tags=run_tags, nested=nested
        ) as run:
            run_id = run.info.run_id
            now = int(datetime.now(UTC).timestamp() * 1000)
            history = [
                Metric(key, float(row[key]), now, int(row["epoch"]))
                for row in detector.training_.history
                for key in ("train_loss", "val_loss")
                if math.isfinite(float(row[key]))
            ]
            client.log_batch(
                run_id,
                metrics=history + [Metric(k, v, now, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in _params(detector, data_source).items()],
            )
            mlflow.log_dict(manifest, "detector_manifest.json")
            for plot_name, fig in training_figures(detector, reference_data, res, labels).items():
                mlflow.log_figure(fig, f"plots/{plot_name}.png")
            if drift_reference is not None:
                profile = Path(tmp) / DRIFT_REFERENCE.rsplit("/", 1)[1]
                drift_reference.to_parquet(profile, index=False)
                mlflow.log_artifact(str(profile), DRIFT_REFERENCE.rsplit("/", 1)[0])
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=str(code),
                artifacts={DETECTOR_ARTIFACT: str(folder)},
                pip_requirements=pip_requirements(),
                signature=model_signature(detector, example, expected),
                input_example=example,
                model_config={"device": "auto"},  # load_model(..., model_config=) overrides
            )
        try:
            client.create_registered_model(name, description="aemon anomaly detector")
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        version_tags = {
            f"{TAG}modality": detector.modality_,
            f"{TAG}threshold": f"{detector.threshold_:.6g}",
            f"{TAG}threshold_method": detector.threshold_info_.method,
            f"{TAG}calibration_fpr": f"{detector.calibration_fpr_:.6g}",
            f"{TAG}data_source": data_source[:5000],
            **{f"{TAG}holdout_{k}": f"{v:.6g}" for k, v in evaluation.items()},
        }
        mv = client.create_model_version(
            name, source=info.model_uri, run_id=run_id, tags=version_tags, model_id=info.model_id
        )
        version = str(mv.version)
        _load_test(client, name, version, example, expected)  # before any alias: STACK.md
        client.set_registered_model_alias(name, CHALLENGER, version)
    log.info("registered %s/%s (run %s) as %s", name, version, run_id, CHALLENGER)
    return RegisteredVersion(
        name=name,
        version=version,
        run_id=run_id,
        aliases=[CHALLENGER],
        promoted=False,
        reason="not decided yet",
        threshold=float(detector.threshold_),
        threshold_method=detector.threshold_info_.method,
        calibration_fpr=float(detector.calibration_fpr_),
        target_fpr=detector.threshold_info_.promised_fpr,
        metrics=metrics,
        evaluation=evaluation,
        tracking_uri=uri,
        false_alarms=detector.adapter_.event_budget(detector),
        cycles=tuple(SEASON_NAMES.get(p, f"{p:g} s") for p in getattr(detector, "calendar_", ())),
        level_free=detector.level_free_columns,
    )


def _load_test(
    client: MlflowClient, name: str, version: str, example: pd.DataFrame, expected: pd.DataFrame
) -> None:
    """Load the registered pyfunc and predict the input example: `log_model` only warns about
    a model that cannot load, and a broken version must never get an alias."""
    problem = None
    try:
        got = mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(example)
        if len(got) != len(expected) or not np.allclose(
            got["score"].to_numpy(np.float64),
            expected["score"].to_numpy(np.float64),
            rtol=1e-5,
            atol=1e-7,
        ):
            problem = "its predictions differ from the detector's"
    except Exception as exc:  # any failure means the version is broken
        problem = f"{type(exc).__name__}: {exc}"
    client.set_model_version_tag(
        name, version, f"{TAG}load_test", "passed" if problem is None else f"failed: {problem}"[:5000]
    )
    if problem is not None:
        raise ModelFormatError(f"{name}/{version} failed its load test ({problem}); it was given no alias")


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if _not_found(exc) or exc.error_code == "INVALID_PARAMETER_VALUE":
            return None
        raise


def promote_version(
    version: RegisteredVersion,
    *,
    reference_data: Input | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    force: bool = False,
) -> RegisteredVersion:
    """Run the quality gate for a registered version against the current champion (scored
    on the same `reference_data`), record the decision as version tags, and move `champion`
    when it passes. Returns the version with its aliases and the gate's reason."""
    client, uri = _client()
    name = version.name
    with _registry_errors(f"promoting {name}/{version.version}", uri):
        current = _alias_version(client, name, CHAMPION)
    champion: dict[str, float] | None = None
    champion_error = None
    if current is not None and current != version.version and not force:
        champion = {}
        if reference_data is not None:
            try:
                old, _ = load_detector(f"{name}/{current}")
                champion = evaluate_detector(old, reference_data, labels)
            except AemonError as exc:
                champion_error = str(exc)
    decision = quality_gate(
        version.evaluation,
        champion,
        calibration_fpr=version.calibration_fpr,
        n_calibration=int(version.metrics.get("n_calibration", 1)),
        target_fpr=version.target_fpr,
        false_alarms=version.false_alarms,
        force=force,
        champion_error=champion_error,
    )
    gate = "forced" if force else ("promoted" if decision.promote else "rejected")
    tags = {f"{TAG}gate": gate, f"{TAG}gate_reason": decision.reason[:5000]}
    if current is not None and current != version.version:
        tags[f"{TAG}gate_compared_with"] = f"{name}/{current}"
    tags.update({f"{TAG}gate_{k}": f"{v:.6g}" for k, v in decision.numbers.items()})
    with _registry_errors(f"promoting {name}/{version.version}", uri):
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        if decision.promote:
            client.set_registered_model_alias(name, CHAMPION, version.version)
        aliases = sorted(client.get_model_version(name, version.version).aliases)
    log.info("%s/%s %s: %s", name, version.version, gate, decision.reason)
    return replace(version, aliases=aliases, promoted=decision.promote, reason=decision.reason)


# --- resolving and loading --------------------------------------------------------------------


def resolve_ref(ref: str) -> ModelRef:
    """Find the version `ref` names; ModelNotFoundError says which part does not exist."""
    name, alias, version = parse_ref(ref)
    client, uri = _client()
    with _registry_errors(f"looking up {ref!r}", uri):
        try:
            model = client.get_registered_model(name)
        except MlflowException as exc:
            if _not_found(exc):
                raise ModelNotFoundError(f"no registered model named {name!r} (tracking URI {uri})") from None
            raise
        if alias is not None:
            aliases = dict(model.aliases or {})
            if alias not in aliases:
                known = ", ".join(sorted(aliases)) or "none"
                raise ModelNotFoundError(f"model {name!r} has no alias {alias!r} (aliases: {known})")
            version = str(aliases[alias])
        try:
            mv = client.get_model_version(name, str(version))  # parse_ref gives an alias or a version
        except MlflowException as exc:
            if _not_found(exc):
                raise ModelNotFoundError(f"model {name!r} has no version {version}") from None
            raise
    return ModelRef(name=name, version=str(mv.version), alias=alias, run_id=mv.run_id)


DRIFT_REFERENCE = "drift/reference.parquet"


def load_drift_reference(ref: ModelRef) -> pd.DataFrame | None:
    """The drift reference profile stored with `ref`'s training run, or None if it has none.

    Computed once per model version at training time; cached per process.
    """
    key = (mlflow_tracking_uri(), ref.run_id or f"{ref.name}/{ref.version}")
    if key in drift_references:
        return drift_references.get(key)
    client, uri = _client()
    with _registry_errors(f"reading the drift reference of {ref}", uri):
        run_id = str(ref.run_id or client.get_model_version(ref.name, ref.version).run_id)
        names = {f.path for f in client.list_artifacts(run_id, DRIFT_REFERENCE.rsplit("/", 1)[0])}
        profile = None
        if DRIFT_REFERENCE in names:
            with tempfile.TemporaryDirectory(prefix="aemon-drift-") as tmp:
                local = client.download_artifacts(run_id, DRIFT_REFERENCE, tmp)
                profile = pd.read_parquet(local, use_threads=False)  # see drift.profiles.load_profile
    keep_drift_reference(profile, ref)
    drift_references.put(key, profile)
    return profile


def load_detector(ref: str, *, device: str = "auto") -> tuple[Detector, ModelRef]:
    """The detector of `NAME` (its champion), `NAME@alias` or `NAME/version`.

    Downloads only the detector folder and loads it with `Detector.load`; versions are
    immutable, so each (store, name, version, device) is loaded once per process.
    Raises ModelNotFoundError naming the missing model, alias or version.
    """
    model_ref = resolve_ref(ref)
    key = (mlflow_tracking_uri(), model_ref.name, model_ref.version, device)
    cached = detectors.get(key)
    if cached is not None:
        return cached, model_ref
    client, uri = _client()
    with (
        tempfile.TemporaryDirectory(prefix="aemon-model-") as tmp,
        _registry_errors(f"downloading {model_ref}", uri),
    ):
        root = client.get_model_version_download_uri(model_ref.name, model_ref.version)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{root.rstrip('/')}/artifacts/{DETECTOR_ARTIFACT}", dst_path=tmp
        )
        detector = open_detector(Path(local), model_ref, device)
        keep_detector(Path(local), model_ref)
    detectors.put(key, detector)
    return detector, model_ref


def list_models(name: str | None = None) -> list[ModelVersionInfo]:
    """Every registered version (of `name`, or of all models), newest first per model."""
    client, uri = _client()
    rows: list[ModelVersionInfo] = []
    with _registry_errors("listing models", uri):
        models = []
        if name is not None:
            try:
                models = [client.get_registered_model(name)]
            except MlflowException as exc:
                if _not_found(exc):
                    raise ModelNotFoundError(f"no registered model named {name!r}") from None
                raise
        else:
            token = None
            while True:
                page = client.search_registered_models(max_results=100, page_token=token)
                models.extend(page)
                token = page.token
                if not token:
                    break
        for model in sorted(models, key=lambda m: m.name):
            by_version: dict[str, list[str]] = {}
            for alias, v in (model.aliases or {}).items():
                by_version.setdefault(str(v), []).append(alias)
            quoted = model.name.replace("'", "\\'")
            versions = client.search_model_versions(f"name = '{quoted}'", max_results=10_000)
            for mv in sorted(versions, key=lambda m: -int(m.version)):
                tags = mv.tags or {}
                thr = tags.get(f"{TAG}threshold")
                rows.append(
                    ModelVersionInfo(
                        name=model.name,
                        version=str(mv.version),
                        aliases=tuple(sorted(by_version.get(str(mv.version), []))),
                        run_id=mv.run_id,
                        created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC),
                        gate=tags.get(f"{TAG}gate"),
                        threshold=float(thr) if thr is not None else None,
                        data_source=tags.get(f"{TAG}data_source"),
                    )
                )
    return rows
