"""The Detector contract: stored arguments, not-fitted errors, save/load, schema checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aemon import (
    CalibrationError,
    ConfigError,
    DataError,
    Detector,
    ModelFormatError,
    NotFittedError,
    SchemaError,
)
from aemon.standardize import calendar_phases, seasonal_periods
from aemon.synthetic import make_images, make_series

FAST = {"epochs": 2, "progress": False, "samples_per_epoch": 1024}


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    return make_series(1_500, 2, seed=3)[0]


@pytest.fixture(scope="module")
def fitted(series: pd.DataFrame) -> Detector:
    return Detector(window=16, **FAST).fit(series)


def test_init_only_stores_arguments() -> None:
    det = Detector(modality="image", window=-5, objective="nonsense")
    assert det.window == -5 and det.objective == "nonsense"
    assert not hasattr(det, "threshold_")


def test_methods_before_fit_raise_not_fitted(series: pd.DataFrame, tmp_path: Path) -> None:
    det = Detector()
    with pytest.raises(NotFittedError, match="not fitted"):
        det.score(series)
    with pytest.raises(NotFittedError):
        det.save(tmp_path / "d")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective": "nonsense"}, "objective must be one of"),  # unknown objective
        ({"loss": "hinge"}, "loss must be one of"),  # unknown loss
        ({"window": 1}, "window must be >= 2"),  # window too short to learn a shape
        ({"calibration_fraction": 0.0}, "calibration_fraction must be > 0"),  # no held-out data
        ({"threshold": "magic"}, "threshold method must be one of"),  # unknown method
        ({"model": "transformer"}, "model must be one of"),  # unknown architecture
    ],
)
def test_bad_arguments_raise_config_error(series: pd.DataFrame, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Detector(**{"window": 16, **FAST, **kwargs}).fit(series)


def test_fit_returns_self_and_sets_fitted_state(series: pd.DataFrame) -> None:
    det = Detector(window=16, **FAST)
    assert det.fit(series) is det
    assert det.threshold_ > 0
    assert det.schema_.timestamp_col == "timestamp"
    assert det.schema_.columns == ("metric_0", "metric_1")
    assert len(det.training_.history) >= 1


def test_score_shapes_and_sign(fitted: Detector, series: pd.DataFrame) -> None:
    res = fitted.score(series)
    assert res.scores.shape == res.is_anomaly.shape == res.p_values.shape == (len(series),)
    np.testing.assert_array_equal(res.is_anomaly, res.scores > fitted.threshold_)
    assert ((res.p_values > 0) & (res.p_values <= 1)).all()
    # p-values fall as scores rise
    order = np.argsort(res.scores)
    assert (np.diff(res.p_values[order]) <= 1e-12).all()
    frame = res.to_frame()
    assert list(frame.columns) == ["key", "timestamp", "score", "is_anomaly", "p_value", "event_id"]


def test_save_load_gives_identical_scores(fitted: Detector, series: pd.DataFrame, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "det")
    assert {p.name for p in folder.iterdir()} == {"weights.pt", "manifest.json"}
    loaded = Detector.load(folder)
    a, b = fitted.score(series), loaded.score(series)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.p_values, b.p_values)
    assert loaded.threshold_ == fitted.threshold_
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["threshold"]["method"] == "event_budget"  # series default: events per time
    assert manifest["threshold"]["false_alarms"] == "1/week"
    assert len(manifest["scoring"]["column_scale"]) == 2
    assert manifest["training"]["fingerprint"].startswith("sha256:")


def test_image_save_load_gives_identical_scores(tmp_path: Path) -> None:
    images, _ = make_images(80, size=12, seed=0)
    det = Detector(**FAST).fit(images)
    loaded = Detector.load(det.save(tmp_path / "img"))
    assert loaded.worst_pixels == det.worst_pixels == 0.05
    np.testing.assert_array_equal(det.score(images).scores, loaded.score(images).scores)
    np.testing.assert_array_equal(det.score(images).error_maps, loaded.score(images).error_maps)
    # a detector saved before `worst_pixels` existed was calibrated on mean errors: kept so
    folder = tmp_path / "img"
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["params"]["worst_pixels"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    old = Detector.load(folder)
    assert old.worst_pixels == 1.0
    res = old.score(images)
    assert res.error_maps is not None
    np.testing.assert_allclose(res.scores, res.error_maps.reshape(len(images), -1).mean(1), rtol=1e-5)
    with pytest.raises(ConfigError, match="worst_pixels"):
        Detector(worst_pixels=0, **FAST).fit(images)


def test_same_seed_same_model_on_cpu(series: pd.DataFrame) -> None:
    a = Detector(window=16, device="cpu", seed=5, **FAST).fit(series)
    b = Detector(window=16, device="cpu", seed=5, **FAST).fit(series)
    np.testing.assert_array_equal(a.score(series).scores, b.score(series).scores)


def test_wrong_schema_is_refused(fitted: Detector, series: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match=r"\['metric_1'\] not found"):
        fitted.score(series.drop(columns=["metric_1"]))


def test_load_refuses_unknown_format(fitted: Detector, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "det")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="format version 99"):
        Detector.load(folder)
    with pytest.raises(ModelFormatError, match="not a saved Detector"):
        Detector.load(tmp_path / "nowhere")


def test_too_short_series_is_a_data_error() -> None:
    frame, _, _ = make_series(60, 1)
    with pytest.raises(DataError, match="too short"):
        Detector(window=32, **FAST).fit(frame)


def test_f1_threshold_refuses_labels_without_anomalies(series: pd.DataFrame) -> None:
    from aemon import CalibrationError

    with pytest.raises(CalibrationError, match="needs anomalies"):
        Detector(window=16, threshold="f1", **FAST).fit(series, labels=np.zeros(len(series)))


def test_f1_threshold_with_labels(series: pd.DataFrame) -> None:
    frame, labels, _ = make_series(3_000, 2, seed=4, incidents=("spike", "level_shift"))
    # incidents sit in the second half; calibration uses the last 20 %, so move one there
    det = Detector(window=16, threshold="f1", calibration_fraction=0.5, **FAST)
    det.fit(frame, labels=labels)
    assert det.threshold_info_.method == "f1"
    assert det.threshold_info_.params["n_anomalies"] > 0


def test_repr_shows_changed_arguments() -> None:
    assert repr(Detector(window=32)) == "Detector(window=32)"


def test_a_weekly_cycle_becomes_a_calendar_input_once_the_data_spans_two_weeks() -> None:
    # Half-hour steps; weekdays peak twice, weekends once and lower (as web traffic does).
    stamps = pd.date_range("2026-03-02", periods=15 * 48, freq="30min").to_numpy()
    when = pd.DatetimeIndex(stamps)
    hour = when.hour + when.minute / 60
    weekday = np.exp(-(((hour - 10) / 1.5) ** 2)) + np.exp(-(((hour - 15) / 1.5) ** 2))
    weekend = 0.4 * np.exp(-(((hour - 13) / 3) ** 2))
    noise = 0.05 * np.random.default_rng(0).normal(size=len(stamps))
    values = np.where(when.dayofweek >= 5, weekend, weekday) + noise
    z = ((values - values.mean()) / values.std())[:, None]
    assert seasonal_periods(z, stamps, window=16) == (86_400.0, 604_800.0)
    two_weeks_less_a_day = 13 * 48
    assert seasonal_periods(z[:two_weeks_less_a_day], stamps[:two_weeks_less_a_day], window=16) == (86_400.0,)
    assert calendar_phases(stamps[:1], (86_400.0, 604_800.0)).shape == (1, 4)
    # The fit data decides, not its training slice (70 % of 15 days: 10.5 days, under two weeks).
    det = Detector(window=16, **FAST).fit(pd.DataFrame({"timestamp": stamps, "hits": values}))
    assert det.calendar_ == (86_400.0, 604_800.0)


def test_a_held_out_end_unlike_training_is_named_at_fit(
    fitted: Detector, series: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    # A trend through the last fifth (the calibration part): 0 to 12 standard deviations. Not a
    # few excursions (those get their own warning) but days whose range training never saw.
    # One column: a univariate series keeps its level (several columns: see the creeping test).
    single = series[["timestamp", "metric_0"]]
    trended = single.copy()
    k = int(len(series) * 0.2)
    trended.loc[len(series) - k :, "metric_0"] += np.linspace(0, 12, k) * series["metric_0"].std()
    with caplog.at_level("WARNING", logger="aemon.detector"):
        det = Detector(window=16, **FAST).fit(trended)
    train = det.threshold_info_.params["training_span_threshold"]
    assert det.threshold_ > 10 * train
    assert "the held-out end of the reference scores far above its training part" in caplog.text
    assert f"{det.threshold_:.4g}" in caplog.text
    # The untouched series: the two parts agree (the same budget, 1.6x), and nothing is said.
    for plain in (fitted, Detector(window=16, **FAST).fit(single)):
        assert plain.threshold_ < 10 * plain.threshold_info_.params["training_span_threshold"]


def _creeping(n: int, start: pd.Timestamp, day0: float, rng: np.random.Generator) -> pd.DataFrame:
    """Load with a daily cycle, latency following it, and disk used creeping 0.8 points a day."""
    days = day0 + np.arange(n) / 288.0  # 5-minute steps
    load = 1 + 0.5 * np.sin(2 * np.pi * days) + rng.normal(0, 0.05, n)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=n, freq="5min"),
            "load": load,
            "latency": 20 + 10 * load + rng.normal(0, 0.5, n),
            "disk": 40 + 0.8 * days + 0.3 * np.sin(2 * np.pi * days) + rng.normal(0, 0.02, n),
        }
    )


CREEPING_ARGS: dict[str, object] = {"window": 32, "epochs": 8, "progress": False, "samples_per_epoch": 2048}


def test_a_creeping_column_is_seen_without_its_level_and_alarms_on_its_slope_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    reference = _creeping(3_000, pd.Timestamp("2026-01-01"), 0.0, rng)
    later = _creeping(2_000, reference["timestamp"].iloc[-1] + pd.Timedelta("5min"), 3_000 / 288, rng)
    later.loc[1_000:1_035, "disk"] += np.linspace(0, 2.0, 36)  # runaway logs: 3 h, 25x the creep
    later.loc[1_036:, "disk"] += 2.0  # and they stay
    det = Detector(**CREEPING_ARGS).fit(reference)
    assert det.level_free_columns == ("disk",)
    res = det.score(later)
    spans = list(zip(res.events.start_index, res.events.end_index, strict=True))
    assert any(a <= 1_035 and b >= 1_000 for a, b in spans), spans  # the ramp is found
    assert res.is_anomaly.mean() < 0.05  # the creep itself is not an incident
    assert max(b - a + 1 for a, b in spans) <= 288  # no alarm of a day or more
    # Modelled with its level, the same column alarms for most of the week it creeps on.
    monkeypatch.setattr("aemon.scoring.wandering_columns", lambda *a, **k: ())
    levelled = Detector(**CREEPING_ARGS).fit(reference)
    assert levelled.level_free_columns == ()
    assert levelled.score(later).is_anomaly.mean() > 0.3


def test_a_column_that_drops_back_in_the_held_out_days_keeps_its_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A clean-up in the held-out days: the disk creeps past its training range, then drops 4
    # points at once. Without its level the drop is a step the model never saw, which would
    # hold the threshold up (148x the training scores against 13x), so the first model stays.
    reference = _creeping(3_000, pd.Timestamp("2026-01-01"), 0.0, np.random.default_rng(0))
    reference.loc[2_600:, "disk"] -= 4.0
    with caplog.at_level("WARNING", logger="aemon.modalities.series"):
        det = Detector(**CREEPING_ARGS).fit(reference)
    assert det.level_free_columns == ()
    assert "['disk'] wander beyond their training level" in caplog.text
    assert "the model keeps their level" in caplog.text


def test_bare_arrays_are_scored_by_column_order(fitted: Detector, series: pd.DataFrame) -> None:
    values = series[["metric_0", "metric_1"]].to_numpy()
    with pytest.raises(SchemaError, match="time column"):  # it reads the phase of the day
        fitted.score(values)
    plain = Detector(window=16, calendar=False, **FAST).fit(series)
    np.testing.assert_array_equal(plain.score(values).scores, plain.score(series).scores)
    with pytest.raises(SchemaError, match=r"shape \(n, 2\)"):
        plain.score(values[:, :1])


def test_daily_cycles_longer_than_the_window_become_calendar_inputs(
    fitted: Detector, series: pd.DataFrame, tmp_path: Path
) -> None:
    # 5-minute steps, a daily cycle of 288 points: longer than the window, shown in training.
    assert fitted.calendar_ == (86_400.0,)
    assert fitted.model_.spec.input_shape == (16, 2 + 2)
    z = (series[list(fitted.schema_.columns)].to_numpy() - fitted.offset_) / fitted.scale_
    stamps = series.timestamp.to_numpy()
    assert seasonal_periods(z, stamps, window=16) == (86_400.0,)
    assert seasonal_periods(z, stamps, window=400) == ()  # the window sees the whole day
    assert seasonal_periods(np.random.default_rng(0).normal(size=z.shape), stamps, window=16) == ()
    phases = calendar_phases(stamps[:3], (86_400.0,))
    assert phases.shape == (3, 2) and np.allclose(phases[0], [0.0, 1.0])  # midnight
    loaded = Detector.load(fitted.save(tmp_path / "d"))
    assert loaded.calendar_ == fitted.calendar_
    np.testing.assert_array_equal(loaded.score(series).scores, fitted.score(series).scores)


def test_false_alarm_budget_never_goes_below_the_pointwise_promise(series: pd.DataFrame) -> None:
    pointwise = Detector(window=16, false_alarms=None, **FAST).fit(series)
    assert pointwise.threshold_info_.method == "quantile"
    # a huge gap merges every flag into one event: the budget alone would allow any threshold
    budget = Detector(window=16, false_alarms="1/day", event_gap=10_000, **FAST).fit(series)
    assert budget.threshold_info_.method == "event_budget"
    assert budget.threshold_ >= pointwise.threshold_


@pytest.mark.parametrize("value", [1e20, 1e38, 1e308, -1e308])
def test_extreme_values_score_finite_and_are_flagged(
    fitted: Detector, series: pd.DataFrame, value: float
) -> None:
    # float32 standardization used to turn 1e308 into NaN: not flagged, batch "done".
    batch = series.iloc[:400].copy()
    batch.iloc[200, 1] = value
    res = fitted.score(batch)
    assert np.isfinite(res.scores).all()
    assert res.is_anomaly[200]


# torch warns about the tampered file's pickle protocol before it refuses to load it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_tampered_weights_file_is_a_model_format_error(fitted: Detector, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "d")
    (folder / "weights.pt").write_bytes(b"\x80\x04not a state dict at all")
    with pytest.raises(ModelFormatError, match="not a readable state dict, corrupt or changed"):
        Detector.load(folder)


def test_an_incident_in_the_held_out_reference_is_named_and_labels_keep_it_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Two weeks at 5 minutes; the last 20 % (from row 3,226) calibrate the threshold. An
    # incident there would hold the threshold above anything like it: aemon says so, names
    # when, and a label for it keeps it out of the calibration.
    frame = make_series(4_032, 2, seed=5)[0]
    frame.loc[3_700:3_729, "metric_0"] += 8.0

    def names_the_incident(det: Detector) -> bool:
        t = frame.timestamp[3_700]
        spans = [x.split(" to ") for x in det.threshold_info_.params.get("reference_outliers", [])]
        return any(pd.Timestamp(a) <= t <= pd.Timestamp(b) for a, b in spans)

    with caplog.at_level("WARNING", logger="aemon.detector"):
        det = Detector(window=16, seed=0, **FAST).fit(frame)
    assert names_the_incident(det), det.threshold_info_.params
    assert "excursion" in caplog.text and "labels=" in caplog.text
    assert det.threshold_info_.params["threshold_without_outliers"] < det.threshold_
    labels = np.zeros(len(frame), dtype=int)
    labels[3_700:3_730] = 1
    labelled = Detector(window=16, seed=0, **FAST).fit(frame, labels=labels)
    assert labelled.threshold_ < det.threshold_ / 2
    assert not names_the_incident(labelled)


def test_a_reference_whose_held_out_part_is_all_labelled_is_a_calibration_error() -> None:
    frame = make_series(4_032, 2, seed=5)[0]
    labels = np.zeros(len(frame), dtype=int)
    labels[3_200:] = 1  # the whole calibration part (the last 20 %, from row 3,226)
    with pytest.raises(CalibrationError, match="labelled an anomaly"):
        Detector(window=16, seed=0, **FAST).fit(frame, labels=labels)


def test_a_column_far_outside_its_training_range_carries_its_own_event() -> None:
    # flat_1 steps between 12 and 13 in normal operation (replicas); at 100 it has never been
    # seen. Without clipped inputs (measured): flat_1 carried 61 % and the event ran 15 rows
    # past each end, as the model's other columns broke too.
    reference = make_series(3_000, 2, seed=5, flat_columns=2)[0]
    det = Detector(window=16, **FAST).fit(reference)
    batch = make_series(800, 2, seed=6, flat_columns=2)[0]
    batch.loc[400:459, "flat_1"] = 100.0
    res = det.score(batch)
    assert res.events is not None
    hit = res.events[(res.events.start_index <= 459) & (res.events.end_index >= 400)]
    assert len(hit) == 1
    contributions = hit.iloc[0].contributions
    assert max(contributions, key=contributions.get) == "flat_1", contributions
    assert contributions["flat_1"] > 0.9
    # The event stays near the rows that moved: the other columns' reconstructions are intact.
    assert hit.iloc[0].start_index >= 400 - 8 and hit.iloc[0].end_index <= 459 + 8


def test_excursions_at_one_time_each_day_are_named_as_daily() -> None:
    from aemon.detector import _daily_hours

    stamps = pd.date_range("2026-03-18", periods=3 * 1440, freq="min").to_numpy()
    nightly = np.array([[92, 166], [1440 + 78, 1440 + 171], [2880 + 77, 2880 + 170]])
    assert _daily_hours(stamps, nightly) == "01:17-02:51"
    assert _daily_hours(stamps, np.array([[92, 166], [1440 + 600, 1440 + 700]])) is None  # 01:32, 11:00
    assert _daily_hours(stamps, nightly[:1]) is None  # one is not a habit
    assert _daily_hours(stamps, np.array([[92, 100], [200, 210]])) is None  # the same day twice
    assert _daily_hours(stamps, np.array([[1430, 1450], [2870, 2890]])) == "23:50-00:10"  # midnight
