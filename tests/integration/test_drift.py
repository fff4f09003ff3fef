"""Drift reports and the flag-rate check on real Evidently reports and real (tiny) detectors.

Known answers: a batch drawn like the reference (another noise seed) shows no drift; a shifted
mean, a doubled scale, and a time-shuffled series (same values, no pattern left) do, each in
the groups where it must show. The drift verdict keeps its promise: slices of normal data
(fresh draws of the generator, and the reference itself), from 288 rows (a day at 5-minute
steps) to 1,440 rows (a day at 1-minute steps), are called drift at most at the promised 1 %
within binomial error, while shifted batches of the same sizes are all called drift.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aemon import Detector
from aemon.calibration import Threshold
from aemon.drift import (
    CALIBRATION_KEY,
    IMAGE_STATS,
    DriftResult,
    batch_profile,
    check_flag_rate,
    check_holdout,
    drift_report,
    drift_verdict,
    event_rate_check,
    flag_rate_check,
    load_profile,
    monitor_batch,
    reference_profile,
    save_profile,
)
from aemon.errors import ConfigError, DataError
from aemon.synthetic import make_images, make_series

N, WINDOW = 3000, 16
VALUE_COLUMNS = ["metric_0", "metric_1"]


@pytest.fixture(scope="module")
def series_detector() -> Detector:
    reference, _, _ = make_series(N, 2)
    return Detector(modality="timeseries", window=WINDOW, epochs=3, progress=False).fit(reference)


@pytest.fixture(scope="module")
def series_reference(series_detector: Detector) -> pd.DataFrame:
    reference, _, _ = make_series(N, 2)
    return reference_profile(series_detector, reference)


@pytest.fixture(scope="module")
def clean_series() -> pd.DataFrame:
    return make_series(N, 2, seed=1)[0]


@pytest.fixture(scope="module")
def image_detector() -> Detector:
    images, _ = make_images(200, size=16)
    return Detector(
        modality="image", model="dense", latent_dim=8, epochs=3, batch_size=512, progress=False
    ).fit(images)


def _groups(drift: DriftResult) -> dict[str, list[str]]:
    return {g: drift.drifted_columns(g) for g in ("input", "latent", "score")}


# --- profiles ---------------------------------------------------------------------------------


def test_reference_profile_columns_and_score_source(
    series_detector: Detector, series_reference: pd.DataFrame
) -> None:
    latent_dim = series_detector.model_.spec.latent_dim
    assert list(series_reference.columns) == [
        *VALUE_COLUMNS,
        *(f"latent_{i}" for i in range(latent_dim)),
        "score",
    ]
    assert len(series_reference) == 2000  # default sample size, < N - WINDOW + 1 windows
    # The score column holds held-out calibration scores (each at most once), not training errors.
    scores = series_reference["score"].dropna().to_numpy()
    assert len(scores) == min(2000, len(series_detector.calibration_scores_))
    assert np.isin(scores, series_detector.calibration_scores_).all()


def test_profile_rows_align_window_end_with_its_latent_code(series_detector: Detector) -> None:
    """Row = a window's last point: its values, and the code of the window ending there."""
    batch, _, _ = make_series(400, 2, seed=5)
    result = series_detector.score(batch, latent_sample=50, seed=3)
    profile = batch_profile(result)
    assert len(profile) == 50
    all_codes = series_detector.encode(batch, max_samples=None)
    values = batch[VALUE_COLUMNS].to_numpy(dtype=np.float32)
    for _, row in profile.iterrows():
        (end,) = np.flatnonzero((values == row[VALUE_COLUMNS].to_numpy(dtype=np.float32)).all(axis=1))
        assert end >= WINDOW - 1
        code = row[[c for c in profile.columns if c.startswith("latent_")]].to_numpy(dtype=np.float32)
        np.testing.assert_allclose(code, all_codes[end - WINDOW + 1], rtol=1e-5, atol=1e-6)
        assert row["score"] == pytest.approx(result.scores[end])


def test_profile_parquet_round_trip(series_reference: pd.DataFrame, tmp_path: Path) -> None:
    path = save_profile(series_reference, tmp_path / "model" / "reference.parquet")
    pd.testing.assert_frame_equal(load_profile(path), series_reference)
    assert load_profile(path).attrs[CALIBRATION_KEY] == series_reference.attrs[CALIBRATION_KEY]
    with pytest.raises(DataError, match="not found"):
        load_profile(tmp_path / "missing.parquet")


# --- series drift -----------------------------------------------------------------------------


def test_clean_series_batch_shows_no_drift(
    series_detector: Detector, series_reference: pd.DataFrame, clean_series: pd.DataFrame, tmp_path: Path
) -> None:
    result = series_detector.score(clean_series)
    drift = monitor_batch(result, series_reference, tmp_path / "clean")
    assert not drift.drift_detected, drift.columns
    assert drift.reasons == []
    assert drift.statistic is not None and drift.threshold is not None
    assert drift.statistic < drift.threshold and drift.promised_rate == 0.01
    assert drift.batch_size == N and drift.calibrated_size is not None and drift.calibrated_size <= N
    # No drift: the small summary alone, no 5 MB Evidently report.
    assert drift.html_path == tmp_path / "clean" / "report.html" and drift.html_path.stat().st_size < 20_000
    assert drift.evidently_path is None and not (tmp_path / "clean" / "evidently.html").exists()
    summary = json.loads(drift.json_path.read_text())
    assert set(summary["columns"]) == set(series_reference.columns) - {"score"}
    assert summary["drift_detected"] is False and summary["statistic"] == pytest.approx(drift.statistic)
    # The plot is drawn for a batch with flagged records (or drift), or when asked for.
    assert (drift.plot_path is not None) == (result.n_flagged > 0)
    as_json = json.loads(json.dumps(drift.to_dict()))
    assert as_json["drift_detected"] is False and as_json["promised_rate"] == 0.01
    assert "called drift 1 % of the time" in as_json["promise"]
    assert {c["stat_test"] for c in drift.columns.values()} == {"wasserstein-normed"}
    # Asked for, the full Evidently report is written beside the summary.
    full = monitor_batch(result, series_reference, tmp_path / "full", full=True)
    assert (
        full.evidently_path == tmp_path / "full" / "evidently.html"
        and full.evidently_path.stat().st_size > 10_000
    )
    snapshot = json.loads((tmp_path / "full" / "evidently.json").read_text())
    assert {m["config"].get("column") for m in snapshot["metrics"]} >= set(series_reference.columns)
    assert "evidently.html" in full.html_path.read_text() and full.drift_detected is False
    assert full.plot_path is not None and full.plot_path.read_bytes()[:4] == b"\x89PNG"
    assert "batch.png" in full.html_path.read_text()


def _mean_shift(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["metric_0"] += 1.5 * frame["metric_0"].std()
    return out


def _scale(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["metric_1"] *= 2.0
    return out


def _shuffle(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out[VALUE_COLUMNS] = frame[VALUE_COLUMNS].to_numpy()[np.random.default_rng(0).permutation(len(frame))]
    return out


@pytest.mark.parametrize(
    ("shift", "drifted_inputs"),
    [
        (_mean_shift, ["metric_0"]),  # one column moves up: its input, the codes and the scores
        (_scale, ["metric_1"]),  # one column doubles in amplitude
        (_shuffle, []),  # same values in random order: inputs unchanged, only the model sees it
    ],
    ids=["mean-shift", "scale-change", "new-pattern"],
)
def test_shifted_series_batch_drifts(
    series_detector: Detector,
    series_reference: pd.DataFrame,
    clean_series: pd.DataFrame,
    tmp_path: Path,
    shift: object,
    drifted_inputs: list[str],
) -> None:
    batch = shift(clean_series)  # type: ignore[operator]
    drift = monitor_batch(series_detector.score(batch), series_reference, tmp_path)
    groups = _groups(drift)
    assert drift.drift_detected
    assert drift.statistic is not None and drift.threshold is not None
    assert drift.statistic > drift.threshold
    assert drift.reasons[0].startswith("drift statistic ") and "1 % of the time" in drift.reasons[0]
    beyond = {n for n, c in drift.columns.items() if c.get("distance", 0.0) > drift.threshold}
    assert set(drifted_inputs) <= beyond  # the moved input itself is beyond the threshold
    assert groups["input"] == drifted_inputs  # Evidently's per-column tests, for the report
    assert len(groups["latent"]) >= series_detector.model_.spec.latent_dim // 2
    assert groups["score"] == ["score"]
    assert drift.html_path.exists() and drift.json_path.exists()
    assert drift.evidently_path is not None and drift.evidently_path.exists()  # drift: the full report


# --- the drift promise ------------------------------------------------------------------------

SLICE_SIZES = (288, 300, 500, 1000, 1440)  # a day at 5-minute steps ... a day at 1-minute steps


def _verdict(detector: Detector, reference: pd.DataFrame, batch: pd.DataFrame) -> bool:
    batch = batch.reset_index(drop=True)
    verdict = drift_verdict(reference, batch_profile(detector.score(batch)))
    assert verdict is not None and verdict.batch_size == len(batch)
    return verdict.drift_detected


def _slices(frame: pd.DataFrame, per_size: int, seed: int) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return [
        frame.iloc[a : a + size] for size in SLICE_SIZES for a in rng.integers(0, len(frame) - size, per_size)
    ]


def test_normal_slices_keep_the_drift_promise(
    series_detector: Detector, series_reference: pd.DataFrame
) -> None:
    """Promise: 1 % of normal batches called drift. Per seed 20 slices of fresh normal data
    (4 per size) give at most one verdict (P(>= 2 of 20) = 1.7 % at exactly 1 %), and all 60
    at most 3 (P(>= 4 of 60) = 0.3 %). Slices of one series overlap, so counts are clumpy:
    a bound that holds per seed is the stricter check."""
    calibration = series_reference.attrs[CALIBRATION_KEY]
    assert calibration["rate"] == 0.01 and calibration["slices"] == "contiguous"
    total = 0
    for seed in range(1, 4):
        fresh = make_series(2 * N, 2, seed=seed)[0]
        drifted = sum(_verdict(series_detector, series_reference, s) for s in _slices(fresh, 4, seed))
        assert drifted <= 1, f"seed {seed}: {drifted} of 20 normal slices called drift"
        total += drifted
    assert total <= 3, f"{total} of 60 normal slices called drift where 1 % was promised"


def test_slices_of_the_reference_itself_are_not_drift(
    series_detector: Detector, series_reference: pd.DataFrame, tmp_path: Path
) -> None:
    """The users' case: 300-row slices of the model's own reference, twenty of them spread
    over it, and slices from 288 rows to a day at 1-minute steps: at most one verdict each."""
    reference = make_series(N, 2)[0]
    starts = np.linspace(0, N - 300, 20).astype(int)
    assert sum(_verdict(series_detector, series_reference, reference.iloc[a : a + 300]) for a in starts) <= 1
    assert sum(_verdict(series_detector, series_reference, s) for s in _slices(reference, 4, 0)) <= 1
    # Through monitor_batch, one of them, with its promise.
    day = reference.iloc[1200:1500].reset_index(drop=True)
    drift = monitor_batch(series_detector.score(day), series_reference, tmp_path)
    assert not drift.drift_detected and drift.batch_size == 300
    assert drift.promise is not None and "1 % of the time" in drift.promise


@pytest.mark.parametrize(
    ("size", "shifts"),
    [(300, (_mean_shift, _scale)), (1440, (_mean_shift, _scale, _shuffle))],
    ids=["300-rows", "a-day-at-1-min"],
)
def test_shifted_slices_are_drift(
    series_detector: Detector, series_reference: pd.DataFrame, size: int, shifts: tuple[Any, ...]
) -> None:
    """Level shift (1.5 std) and doubled amplitude of one column are drift at every size; a
    time-shuffled series (same values) is caught on a day at 1-minute steps, not always on
    300 rows, where its latent codes move about as much as a normal day's can."""
    fresh = make_series(2 * N, 2, seed=7)[0]
    for a in np.linspace(0, 2 * N - size, 5).astype(int):
        batch = fresh.iloc[a : a + size].reset_index(drop=True)
        for shift in shifts:
            assert _verdict(series_detector, series_reference, shift(batch)), (shift.__name__, a)


def test_uncalibrated_reference_falls_back_to_column_tests(
    series_reference: pd.DataFrame, clean_series: pd.DataFrame, series_detector: Detector, tmp_path: Path
) -> None:
    """A profile from an older aemon has no calibration: Evidently's per-column rule decides,
    and no promise is claimed."""
    old = series_reference.copy()
    old.attrs = {}
    current = batch_profile(series_detector.score(clean_series))
    assert drift_verdict(old, current) is None
    drift = drift_report(old, current, tmp_path, method="wasserstein")
    assert drift.promised_rate is None and drift.statistic is None and drift.promise is None


def test_profiles_must_match(series_reference: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="different columns"):
        drift_report(series_reference, series_reference.drop(columns=["metric_0"]), tmp_path)


# --- image drift ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "dim", "drifted"),
    [(1, 1.0, False), (2, 0.6, True)],  # another draw of the same images; the same, 40 % darker
    ids=["clean", "darker"],
)
def test_image_batch_drift(
    image_detector: Detector, tmp_path: Path, seed: int, dim: float, drifted: bool
) -> None:
    reference, _ = make_images(200, size=16)
    profile = reference_profile(image_detector, reference)
    assert list(profile.columns[: len(IMAGE_STATS)]) == list(IMAGE_STATS)
    batch = (make_images(200, size=16, seed=seed)[0] * dim).astype(np.uint8)
    result = image_detector.score(batch)
    drift = monitor_batch(result, profile, tmp_path, full=True)
    assert drift.drift_detected is drifted, drift.columns
    assert drift.promised_rate == 0.01 and profile.attrs[CALIBRATION_KEY]["slices"] == "random"
    if drifted:  # all three groups move
        groups = _groups(drift)
        assert len(groups["input"]) >= 3 and len(groups["latent"]) >= 4 and groups["score"] == ["score"]
    assert {c["stat_test"] for c in drift.columns.values()} == {"ks"}  # 200 independent images
    assert drift.plot_path is not None and drift.plot_path.stat().st_size > 0


def test_image_subsets_keep_the_drift_promise(image_detector: Detector) -> None:
    """Random subsets of fresh images (20 to 200) are drift at most once in 20; darker ones always."""
    reference, _ = make_images(200, size=16)
    profile = reference_profile(image_detector, reference)
    rng = np.random.default_rng(0)
    drifted = darker = 0
    for seed in range(1, 5):
        images = make_images(200, size=16, seed=seed)[0]
        for size in (20, 50, 100, 150, 200):
            batch = images[rng.choice(len(images), size, replace=False)]
            verdict = drift_verdict(profile, batch_profile(image_detector.score(batch)))
            assert verdict is not None
            drifted += verdict.drift_detected
            dark = (batch * 0.6).astype(np.uint8)
            verdict = drift_verdict(profile, batch_profile(image_detector.score(dark)))
            assert verdict is not None
            darker += verdict.drift_detected
    assert drifted <= 1 and darker == 20


# --- flag rate --------------------------------------------------------------------------------


def test_flag_rate_check_fires_on_a_broken_model(
    series_detector: Detector, clean_series: pd.DataFrame
) -> None:
    healthy = check_flag_rate(series_detector, series_detector.score(clean_series))
    assert healthy is not None
    assert not healthy.broken, healthy.message

    broken_model = copy.deepcopy(series_detector)
    broken_model.threshold_ = float(np.median(series_detector.calibration_scores_))  # flags ~half
    check = check_flag_rate(broken_model, broken_model.score(clean_series))
    assert check is not None and check.broken  # the default promise: false alarms per week
    assert check.observed_rate > 10 * check.promised_rate and check.promised_rate == 1 / 7
    assert "alarms in" in check.message and "more than the 1/week promised on normal data" in check.message

    pointwise = copy.deepcopy(broken_model)  # a pointwise threshold keeps its pointwise check
    pointwise.false_alarms_ = None
    pointwise.threshold_info_ = Threshold(pointwise.threshold_, "quantile", {"target_fpr": 0.01})
    check = check_flag_rate(pointwise, pointwise.score(clean_series))
    assert check is not None and check.broken
    assert check.observed_rate > 0.3 and check.promised_rate == 0.01
    assert check.message.startswith("this model flags ") and "where it promised 1.0 %" in check.message


def test_a_held_out_end_that_flags_far_more_than_normal_is_named(
    series_detector: Detector, clean_series: pd.DataFrame
) -> None:
    from aemon.evaluation import evaluate_detector

    clean = check_holdout(series_detector, evaluate_detector(series_detector, clean_series))
    assert clean is not None and not clean.broken, clean.message
    column = next(c for c in clean_series.columns if c != "timestamp")
    moved = clean_series.assign(**{column: clean_series[column] + 8 * clean_series[column].std()})
    check = check_holdout(series_detector, evaluate_detector(series_detector, moved))
    assert check is not None and check.broken
    assert check.message.startswith("the held-out end of the reference flags ")


@pytest.mark.parametrize(
    ("n_flagged", "n_records", "block_size", "broken"),
    [
        (90, 1000, 1, True),  # 9 % against 1 %
        (12, 1000, 1, False),  # 1.2 %: chance
        (0, 1000, 1, False),
        (30, 1000, 1, True),  # 3 % of 1,000 independent images: significant
        (30, 1000, 16, False),  # the same count on a series, neighbours flagged together: not
        (1_200, 100_000, 1, False),  # significant, but only 1.2x the promise (min_ratio)
        (0, 0, 1, False),  # an empty batch promises nothing
    ],
)
def test_flag_rate_check_table(n_flagged: int, n_records: int, block_size: int, broken: bool) -> None:
    check = flag_rate_check(n_flagged, n_records, 0.01, block_size=block_size)
    assert check.broken is broken
    assert 0.0 <= check.p_value <= 1.0


@pytest.mark.parametrize(
    ("k", "n", "rate"), [(0, 10, 0.01), (1, 10, 0.01), (5, 100, 0.01), (90, 1000, 0.01), (3, 3, 0.5)]
)
def test_the_rate_checks_give_scipy_stats_p_values(k: int, n: int, rate: float) -> None:
    """The p-values come from scipy.special (a light import); they are scipy.stats' tests."""
    from scipy.stats import binomtest, poisson

    assert flag_rate_check(k, n, rate).p_value == pytest.approx(
        binomtest(k, n, rate, alternative="greater").pvalue, rel=1e-9
    )
    promised = n * rate  # events: a budget of `rate` per day over `n` days
    check = event_rate_check(k, pd.Timedelta(days=n), f"{rate}/day")
    expected = poisson.sf(k - 1, promised) if k else 1.0
    assert check.p_value == pytest.approx(expected, rel=1e-9)


def test_flag_rate_check_message_and_errors() -> None:
    assert flag_rate_check(90, 1000, 0.01).message.startswith(
        "this model flags 9.0 % where it promised 1.0 %"
    )
    # A series batch: the promise is about normal data, so the excess is not blamed on the model.
    broken = event_rate_check(10, pd.Timedelta(days=14), "1/week")
    assert broken.broken and broken.message.startswith("10 alarms in 14 days, more than the 1/week promised")
    assert broken.message.endswith("incidents, or data unlike the reference")
    kept = event_rate_check(2, pd.Timedelta(days=14), "1/week")
    assert not kept.broken and kept.message.startswith("alarms within the promise: 2 alarms in 14 days")
    with pytest.raises(ConfigError):
        flag_rate_check(5, 4, 0.01)
    with pytest.raises(ConfigError):
        flag_rate_check(1, 10, 1.5)
