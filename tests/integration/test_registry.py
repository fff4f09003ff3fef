"""Registry against a real MLflow SQLite store in each test's AEMON_HOME: logging, aliases and
the quality gate, the pyfunc model, resolving references. Detectors are trained once per
module on tiny data; `aemon.registry` is imported inside tests, after AEMON_HOME is set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aemon import Detector
from aemon.errors import ModelNotFoundError
from aemon.synthetic import make_images, make_series

pytestmark = pytest.mark.usefixtures("mlflow_store")


@pytest.fixture(scope="module")
def holdout() -> tuple[pd.DataFrame, np.ndarray]:
    frame, labels, _ = make_series(600, 2, seed=1, incidents=("spike", "level_shift", "pattern_change"))
    return frame, labels


@pytest.fixture(scope="module")
def good() -> Detector:
    reference, _, _ = make_series(1200, 2, seed=0)
    return Detector(window=16, epochs=2, progress=False).fit(reference)


@pytest.fixture(scope="module")
def worse() -> Detector:
    """One epoch through a 1-unit bottleneck: clearly worse AUROC than `good`."""
    reference, _, _ = make_series(1200, 2, seed=0)
    return Detector(window=16, epochs=1, latent_dim=1, progress=False).fit(reference)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    images, _ = make_images(60, size=16, anomaly_fraction=0.1, seed=3)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def image_detector() -> Detector:
    images, _ = make_images(100, size=16, seed=2)
    return Detector(model="dense", epochs=2, progress=False).fit(images)


def test_first_version_is_champion_and_challenger(
    good: Detector, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    import mlflow

    from aemon.registry import CHALLENGER, CHAMPION, log_training

    frame, labels = holdout
    v = log_training(good, name="cpu", data_source="memory", reference_data=frame, labels=labels)
    # What the registry holds, not the returned flag (a first version is always promoted):
    # both aliases point at version 1, and the gate's reason is the rule that applied.
    client = mlflow.MlflowClient()
    for alias in (CHAMPION, CHALLENGER):
        assert str(client.get_model_version_by_alias("cpu", alias).version) == v.version == "1"
    assert set(v.aliases) == {CHAMPION, CHALLENGER}
    assert "no champion" in v.reason
    assert v.threshold == pytest.approx(good.threshold_)
    assert 0.7 < v.evaluation["auroc"] <= 1.0
    # Series events: the budget's terms on the held-out data (600 rows at 5-minute steps).
    assert v.false_alarms == "1/week" and v.cycles == ("day",)
    assert v.evaluation["span_days"] == pytest.approx(599 * 5 / 1440)
    assert 0 <= v.evaluation["n_false_events"] <= v.evaluation["n_events"]
    run = mlflow.get_run(v.run_id)
    assert run.data.params["window"] == "16" and run.data.params["arch"] == "dense"
    assert {"threshold", "calibration_fpr", "holdout_auroc", "val_loss"} <= set(run.data.metrics)
    history = mlflow.MlflowClient().get_metric_history(v.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2]  # one point per epoch
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(v.run_id, "plots")}
    assert plots == {"plots/loss_curve.png", "plots/calibration_scores.png", "plots/holdout_series.png"}
    tags = mlflow.MlflowClient().get_model_version("cpu", "1").tags
    assert tags["aemon.gate"] == "promoted" and tags["aemon.load_test"] == "passed"


def test_worse_version_stays_challenger_and_promote_forces(
    good: Detector, worse: Detector, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    import mlflow

    from aemon.evaluation import evaluate_detector
    from aemon.registry import list_models, log_training

    frame, labels = holdout
    # precondition: on the same held-out data the worse detector really is worse
    assert (
        evaluate_detector(worse, frame, labels)["auroc"]
        < evaluate_detector(good, frame, labels)["auroc"] - 0.05
    )
    log_training(good, name="cpu", data_source="memory", reference_data=frame, labels=labels)
    v2 = log_training(worse, name="cpu", data_source="memory", reference_data=frame, labels=labels)
    assert (v2.version, v2.promoted, v2.aliases) == ("2", False, ["challenger"])
    assert "AUROC" in v2.reason or "false-positive" in v2.reason or "false alarm" in v2.reason
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("cpu", "champion").version) == "1"
    tags = client.get_model_version("cpu", "2").tags
    assert tags["aemon.gate"] == "rejected" and tags["aemon.gate_compared_with"] == "cpu/1"

    v3 = log_training(worse, name="cpu", data_source="memory", promote=True)
    assert (v3.version, v3.promoted, set(v3.aliases)) == ("3", True, {"champion", "challenger"})
    rows = {r.version: r for r in list_models()}
    assert rows["3"].aliases == ("challenger", "champion") and rows["1"].aliases == ()
    assert (rows["1"].gate, rows["2"].gate, rows["3"].gate) == ("promoted", "rejected", "forced")


def test_pyfunc_and_load_detector_score_like_the_detector(
    good: Detector, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    import mlflow

    from aemon.registry import load_detector, log_training

    frame, labels = holdout
    log_training(good, name="cpu", data_source="memory", reference_data=frame, labels=labels)
    expected = good.score(frame).to_frame()
    got = mlflow.pyfunc.load_model("models:/cpu@champion").predict(frame)
    assert list(got.columns) == ["key", "timestamp", "score", "is_anomaly", "p_value", "event_id"]
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-6)
    np.testing.assert_array_equal(got["is_anomaly"], expected["is_anomaly"])
    np.testing.assert_allclose(got["p_value"], expected["p_value"], rtol=1e-6)
    np.testing.assert_array_equal(got["event_id"], expected["event_id"])
    # Counts read from a CSV are int64: served like the same values as floats.
    values = [c for c in frame.columns if c != "timestamp"]
    counts = frame.assign(**{c: frame[c].round().astype("int64") for c in values})
    model = mlflow.pyfunc.load_model("models:/cpu@champion")
    np.testing.assert_allclose(
        model.predict(counts)["score"],
        good.score(counts.astype({c: float for c in values})).scores,
        rtol=1e-6,
    )
    with pytest.raises(Exception, match=values[0]):  # text where a number belongs: named
        model.predict(frame.assign(**{values[0]: "high"}))

    loaded, ref = load_detector("cpu")
    assert (ref.name, ref.version, ref.alias) == ("cpu", "1", "champion")
    np.testing.assert_allclose(loaded.score(frame).scores, expected["score"], rtol=1e-6)
    assert load_detector("cpu/1")[0] is loaded  # cached per (store, name, version)


_LOAD_IN_A_FRESH_PROCESS = """
import sys
from aemon.registry import load_detector, load_drift_reference
det, ref = load_detector(sys.argv[1])
profile = load_drift_reference(ref)
print(ref.version, det.threshold_, profile is not None, "mlflow" in sys.modules)
"""


def _load_in_a_fresh_process(ref: str) -> list[str]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _LOAD_IN_A_FRESH_PROCESS, ref], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_kept_version_loads_without_mlflow_and_follows_its_alias(
    good: Detector, worse: Detector, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    """A one-off `aemon score` must not pay for importing MLflow: a version downloaded once is
    kept on disk, and the champion alias is read from the SQLite registry directly. When the
    alias moves, the new version comes from MLflow once, then from disk."""
    from aemon.registry import log_training

    frame, _ = holdout
    profile = pd.DataFrame({"column": ["a", "b"], "value": [1.0, 2.0]})
    log_training(good, name="kept", data_source="memory", reference_data=frame, drift_reference=profile)
    v1 = f"{good.threshold_}"
    assert _load_in_a_fresh_process("kept") == ["1", v1, "True", "True"]  # downloads, keeps
    assert _load_in_a_fresh_process("kept") == ["1", v1, "True", "False"]  # no MLflow at all
    assert _load_in_a_fresh_process("kept/1") == ["1", v1, "True", "False"]

    log_training(worse, name="kept", data_source="memory", reference_data=frame, promote=True)
    v2_threshold = f"{worse.threshold_}"
    # version 2 has no drift profile: that too is kept, and not asked of MLflow again
    assert _load_in_a_fresh_process("kept") == ["2", v2_threshold, "False", "True"]
    assert _load_in_a_fresh_process("kept@champion") == ["2", v2_threshold, "False", "False"]
    assert _load_in_a_fresh_process("kept@challenger") == ["2", v2_threshold, "False", "False"]
    assert _load_in_a_fresh_process("kept/1") == ["1", v1, "True", "False"]


def test_image_pyfunc_takes_paths_or_png_bytes(image_detector: Detector, image_folder: Path) -> None:
    import mlflow
    from PIL import Image

    from aemon.registry import log_training

    images = np.stack([np.asarray(Image.open(p)) for p in sorted(image_folder.glob("*.png"))])
    v = log_training(image_detector, name="rings", data_source=str(image_folder), reference_data=images)
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(v.run_id, "plots")}
    assert "plots/holdout_images.png" in plots
    expected = image_detector.score(image_folder).scores
    model = mlflow.pyfunc.load_model("models:/rings@champion")
    paths = [str(p) for p in sorted(image_folder.glob("*.png"))]
    by_path = model.predict(pd.DataFrame({"path": paths}))
    np.testing.assert_allclose(by_path["score"], expected, rtol=1e-6)
    assert list(by_path["key"]) == paths
    by_bytes = model.predict(pd.DataFrame({"image": [Path(p).read_bytes() for p in paths]}))
    np.testing.assert_allclose(by_bytes["score"], expected, rtol=1e-6)
    assert list(by_bytes.columns) == ["key", "score", "is_anomaly", "p_value"]


def test_missing_model_alias_or_version_is_named(good: Detector) -> None:
    from aemon.errors import ConfigError
    from aemon.registry import list_models, load_detector, log_training

    assert list_models() == []
    with pytest.raises(ModelNotFoundError, match="no registered model named 'nope'"):
        load_detector("nope")
    log_training(good, name="cpu", data_source="memory")
    with pytest.raises(ModelNotFoundError, match="'cpu' has no alias 'staging'"):
        load_detector("cpu@staging")
    with pytest.raises(ModelNotFoundError, match="'cpu' has no version 7"):
        load_detector("cpu/7")
    with pytest.raises(ConfigError, match="version must be a number"):
        load_detector("cpu/latest")


# --- the quality gate, on numbers (no store needed) --------------------------------------------

GATE_CASES = [
    # challenger held-out metrics, champion's on the same data, force -> promote?
    pytest.param({}, None, False, True, id="no champion yet"),
    pytest.param({"fpr": 0.5, "n_normal": 100}, {}, True, True, id="forced despite bad fpr"),
    pytest.param({"fpr": 0.01, "n_normal": 100}, {}, False, True, id="fpr ok, no labels"),
    pytest.param({"fpr": 0.05, "n_normal": 1000}, {}, False, False, id="fpr over 2x target"),
    pytest.param({"fpr": 0.02, "n_normal": 1000}, {}, False, True, id="fpr within slack"),
    pytest.param(
        {"fpr": 0.0, "n_normal": 500, "auroc": 0.90}, {"auroc": 0.95}, False, False, id="worse auroc"
    ),
    pytest.param(
        {"fpr": 0.0, "n_normal": 500, "auroc": 0.9495},
        {"auroc": 0.95},
        False,
        True,
        id="auroc equal within tolerance",
    ),
    pytest.param(
        {"fpr": 0.0, "n_normal": 500, "auroc": 0.97}, {"auroc": 0.95}, False, True, id="better auroc"
    ),
]


@pytest.mark.parametrize(("challenger", "champion", "force", "promote"), GATE_CASES)
def test_quality_gate(
    challenger: dict[str, float], champion: dict[str, float] | None, force: bool, promote: bool
) -> None:
    from aemon.registry import quality_gate

    decision = quality_gate(
        challenger, champion, calibration_fpr=0.01, n_calibration=200, target_fpr=0.01, force=force
    )
    assert decision.promote is promote, decision.reason


@pytest.mark.parametrize(
    ("challenger", "target_fpr", "expected"),
    [
        # nothing held out: the calibration rate was checked, the champion was not compared
        (
            {},
            0.01,
            "calibration false-positive rate 0.01 within the limit 0.025 (target 0.01); "
            "nothing held out, so not compared with the champion",
        ),
        # held out without labels: the held-out rate was checked, AUROC could not be
        (
            {"fpr": 0.0, "n_normal": 100},
            0.01,
            "held-out false-positive rate 0 within the limit 0.03 (target 0.01); "
            "no labels on the held-out data, so AUROC not compared with the champion's",
        ),
        # an event budget promises no pointwise rate: nothing to check, and it says so
        (
            {"fpr": 0.0, "n_normal": 100},
            None,
            "no pointwise false-positive target to check (event budget or f1 threshold); "
            "no labels on the held-out data, so AUROC not compared with the champion's",
        ),
    ],
)
def test_quality_gate_says_what_it_checked(
    challenger: dict[str, float], target_fpr: float | None, expected: str
) -> None:
    from aemon.registry import quality_gate

    decision = quality_gate(challenger, {}, calibration_fpr=0.01, n_calibration=200, target_fpr=target_fpr)
    assert decision.promote and decision.reason == expected


@pytest.mark.parametrize(
    ("n_false", "promote", "reason"),
    [
        (1, True, "1 held-out false alarm(s) in 4.2 days, within the 1/week promised; no labels"),
        # 0.6 promised over 4.2 days: 8 or more has P = 2.4e-7 (Poisson)
        (8, False, "8 held-out false alarm(s) in 4.2 days: more than the 1/week promised (p = 2.4e-07)"),
    ],
)
def test_quality_gate_holds_an_event_budget_on_the_held_out_data(
    n_false: int, promote: bool, reason: str
) -> None:
    from aemon.registry import quality_gate

    challenger = {
        "fpr": 0.01,
        "n_normal": 1200,
        "n_events": n_false,
        "n_false_events": n_false,
        "span_days": 4.2,
    }
    decision = quality_gate(
        challenger, {}, calibration_fpr=0.0, n_calibration=1000, target_fpr=None, false_alarms="1/week"
    )
    assert decision.promote is promote and decision.reason.startswith(reason), decision.reason
    assert decision.numbers["holdout_false_events"] == n_false


def test_quality_gate_rejects_an_incomparable_champion() -> None:
    from aemon.registry import quality_gate

    decision = quality_gate(
        {"fpr": 0.0},
        {},
        calibration_fpr=0.0,
        n_calibration=100,
        target_fpr=0.01,
        champion_error="columns changed",
    )
    assert not decision.promote and "columns changed" in decision.reason
