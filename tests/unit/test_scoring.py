"""Streaming window scoring equals scoring the whole series at once, whatever the chunking."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from aemon.errors import ConfigError
from aemon.models import Autoencoder, default_spec
from aemon.scoring import (
    STEPPING_SCALE,
    SeriesScoring,
    WindowScorer,
    encode,
    fit_series_scoring,
    movement,
    phase_bins,
    phase_profile,
    rest_levels,
    score_images,
    score_windows,
    series_point_scores,
    wandering_columns,
)
from aemon.training import elementwise_loss


def tiny_model(window: int, cols: int) -> Autoencoder:
    torch.manual_seed(0)
    return Autoencoder(default_spec("dense", "timeseries", (window, cols), latent_dim=3)).eval()


def brute_force(model: Autoencoder, x: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Reference: loop over windows, average each point's error over covering windows."""
    n = len(x)
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    acc, cnt = np.zeros(x.shape), np.zeros(n)
    with torch.no_grad():
        for s in starts:
            xt = torch.from_numpy(x[s : s + window][None])
            acc[s : s + window] += elementwise_loss(model(xt).recon, xt, "mse")[0].double().numpy()
            cnt[s : s + window] += 1
    return acc / cnt[:, None]


@pytest.mark.parametrize(
    ("n", "window", "stride", "chunk_rows"),
    [
        (100, 8, 1, 1000),  # one chunk
        (100, 8, 1, 7),  # chunks shorter than the window
        (101, 8, 3, 10),  # stride leaves a tail: a final window covers it
        (64, 16, 16, 20),  # non-overlapping windows
        (16, 16, 1, 5),  # exactly one window
    ],
)
def test_streaming_matches_brute_force(n: int, window: int, stride: int, chunk_rows: int) -> None:
    x = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
    model = tiny_model(window, 2)
    chunks = (x[i : i + chunk_rows] for i in range(0, n, chunk_rows))
    got, _ = score_windows(model, chunks, window, stride, "mse", torch.device("cpu"))
    np.testing.assert_allclose(got, brute_force(model, x, window, stride), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("stride", [1, 3])
def test_scored_columns_equal_the_leading_columns_of_all(stride: int) -> None:
    """Context columns (calendar phases) are left out of the errors, not of the model's input."""
    x = np.random.default_rng(2).normal(size=(90, 3)).astype(np.float32)
    model = tiny_model(8, 3)
    chunks = [x[:40], x[40:]]
    every, _ = score_windows(model, iter(chunks), 8, stride, "mse", torch.device("cpu"))
    first, _ = score_windows(model, iter(chunks), 8, stride, "mse", torch.device("cpu"), scored=1)
    assert first.shape == (90, 1)
    np.testing.assert_array_equal(first, every[:, :1])


def test_scorer_forward_chunks_do_not_change_results() -> None:
    x = np.random.default_rng(1).normal(size=(500, 1)).astype(np.float32)
    model = tiny_model(10, 1)
    a, _ = score_windows(model, iter([x]), 10, 1, "mse", torch.device("cpu"))
    scorer = WindowScorer(model, 10, 1, "mse", torch.device("cpu"), chunk=7)
    b = np.concatenate([scorer.push(x).errors, scorer.finish().errors])
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize(("worst_pixels", "n_worst"), [(1.0, 64), (0.05, 4), (0.001, 1)])
def test_image_scores_are_the_mean_of_the_worst_pixels(worst_pixels: float, n_worst: int) -> None:
    torch.manual_seed(0)
    model = Autoencoder(default_spec("conv", "image", (1, 8, 8), output="sigmoid")).eval()
    images = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    scores, maps, _ = score_images(model, images, "mse", torch.device("cpu"), worst_pixels, chunk=2)
    assert maps is not None and maps.shape == (5, 8, 8)
    worst = np.sort(maps.reshape(5, -1), axis=1)[:, -n_worst:]  # ceil(share * 64) pixels
    np.testing.assert_allclose(scores, worst.mean(1), rtol=1e-5)


def test_encode_gives_one_code_per_sample() -> None:
    model = tiny_model(8, 2)
    codes = encode(model, np.zeros((13, 8, 2), np.float32), torch.device("cpu"), chunk=5)
    assert codes.shape == (13, 3)


@pytest.mark.parametrize(("stride", "chunk", "chunk_rows"), [(1, 7, 1000), (3, 4, 11), (5, 1000, 30)])
def test_sampled_codes_from_the_scoring_pass_equal_encoding_those_windows(
    stride: int, chunk: int, chunk_rows: int
) -> None:
    """The drift profile's latent codes come from the scoring pass: the same codes as
    encoding the sampled windows alone, whatever the chunking."""
    x = np.random.default_rng(2).normal(size=(200, 2)).astype(np.float32)
    model = tiny_model(8, 2)
    grid = np.arange(0, 200 - 8 + 1, stride)
    starts = np.sort(np.random.default_rng(0).choice(grid, 17, replace=False))
    scorer = WindowScorer(model, 8, stride, "mse", torch.device("cpu"), chunk=chunk, sample_starts=starts)
    for i in range(0, 200, chunk_rows):
        scorer.push(x[i : i + chunk_rows])
    scorer.finish()
    windows = np.stack([x[s : s + 8] for s in starts])
    np.testing.assert_allclose(
        scorer.codes, encode(model, windows, torch.device("cpu")), rtol=1e-5, atol=1e-6
    )


def test_sampled_image_codes_equal_encoding_those_images() -> None:
    torch.manual_seed(0)
    model = Autoencoder(default_spec("conv", "image", (1, 8, 8), output="sigmoid")).eval()
    images = np.random.default_rng(0).random((9, 1, 8, 8)).astype(np.float32)
    sample = np.array([0, 3, 4, 8])
    _, _, codes = score_images(model, images, "mse", torch.device("cpu"), chunk=2, sample=sample)
    np.testing.assert_allclose(
        codes, encode(model, images[sample], torch.device("cpu")), rtol=1e-5, atol=1e-6
    )


def test_root_smoothing_ranks_a_sustained_deviation_above_one_spike_of_equal_energy() -> None:
    # The same total squared error, once in one point and once spread over 8: averaging the
    # squares scores both alike; averaging their roots scores the sustained one 8x higher.
    errors = np.full((200, 1), 1e-4)
    errors[50, 0] = 8.0
    errors[148:156, 0] = 1.0
    flat = series_point_scores(errors, SeriesScoring((1.0,), smoothing=16))[0]
    root = series_point_scores(errors, SeriesScoring((1.0,), smoothing=16, root=True))[0]
    assert flat[50] == pytest.approx(flat[152], rel=0.01)
    assert root[152] > 7 * root[50]
    # Scores stay squared errors: a constant error scores itself either way.
    steady = np.full((50, 2), 0.25)
    assert np.allclose(series_point_scores(steady, SeriesScoring((1.0, 1.0), 16, root=True))[0], 0.25)


def test_series_scoring_round_trips_and_old_manifests_load_without_the_root() -> None:
    scoring = SeriesScoring((0.5, 2.0), smoothing=16, root=True)
    assert SeriesScoring.from_dict(scoring.to_dict()) == scoring
    assert SeriesScoring.from_dict({"column_scale": [1.0], "smoothing": 4}).root is False
    assert SeriesScoring.from_dict({"column_scale": [1.0], "smoothing": 4}).phase_factors == ()


def busy_day_errors(days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """5-minute squared errors of two columns whose noise is 4x (16x squared) larger from 8:00
    to 20:00 than at night, as when noise grows with the level; and their timestamps."""
    stamps = np.datetime64("2026-03-02") + np.arange(days * 288) * np.timedelta64(5, "m")
    hour = (stamps - stamps.astype("datetime64[D]")).astype("timedelta64[m]").astype(int) / 60
    sd = np.where((hour >= 8) & (hour < 20), 4.0, 1.0)
    noise = np.random.default_rng(seed).normal(size=(len(stamps), 2)) * sd[:, None]
    return noise**2, stamps


def test_phase_factors_let_a_quiet_hour_incident_outscore_busy_hour_noise() -> None:
    train, train_stamps = busy_day_errors(14, seed=0)
    test, stamps = busy_day_errors(2, seed=1)
    test[36:48] += 9.0  # 3:00-4:00, an hour at 3 sigma of the night's noise in both columns
    plain = fit_series_scoring(train, 16, root=True)
    phased = fit_series_scoring(train, 16, root=True, timestamps=train_stamps, period=86400.0)
    factors = np.asarray(phased.phase_factors)
    assert factors.shape == (24, 2)
    assert factors[12].min() > 8 * factors[2].max()  # noon's errors weigh about 16x night's
    busy = slice(8 * 12 + 16, 20 * 12 - 16)  # busy hours away from the incident's smoothing
    plain_scores = series_point_scores(test, plain)[0]
    phased_scores = series_point_scores(test, phased, stamps)[0]
    assert plain_scores[42] < plain_scores[busy].max()  # without: busy noise outscores it
    assert phased_scores[42] > 2 * phased_scores[busy].max()
    again = SeriesScoring.from_dict(phased.to_dict())
    assert again == phased
    np.testing.assert_array_equal(series_point_scores(test, again, stamps)[0], phased_scores)
    with pytest.raises(ConfigError, match="timestamps"):
        series_point_scores(test, phased)


@pytest.mark.parametrize("seed", range(3))
def test_phase_factors_ignore_a_pattern_that_does_not_recur(seed: int) -> None:
    # Errors 16x larger from 10:00 to 12:00 in the first week only (an accident, not a
    # cycle): the factors of the whole reference would weigh those hours down about 2x; the
    # halves disagree, so they stay near 1.
    rng = np.random.default_rng(seed)
    stamps = np.datetime64("2026-03-02") + np.arange(14 * 288) * np.timedelta64(5, "m")
    hour = (stamps - stamps.astype("datetime64[D]")).astype("timedelta64[m]").astype(int) / 60
    errors = rng.normal(size=(len(stamps), 1)) ** 2
    errors[(hour >= 10) & (hour < 12) & (np.arange(len(stamps)) < 7 * 288)] *= 16
    bins = phase_bins(stamps, 86400.0, 24)
    assert np.asarray(phase_profile(errors, bins)).max() < 1.3
    consistent = errors.copy()
    consistent[(hour >= 10) & (hour < 12)] *= 16  # every day: a cycle
    assert np.asarray(phase_profile(consistent, bins)).max() > 5


def noisy_with_a_steady_column(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardized values of a noisy column and of one that holds still in normal operation
    (a configured limit), and errors such as a model makes on them (noise it cannot predict)."""
    rng = np.random.default_rng(seed)
    noisy = np.sin(np.arange(n) / 40) + rng.normal(0, 0.3, n)
    values = np.stack([noisy, np.full(n, 0.5)], axis=1)
    errors = np.stack([rng.normal(0, 0.3, n) ** 2, np.full(n, 1e-6)], axis=1)
    return values, errors


def test_a_stuck_column_scores_although_its_error_falls() -> None:
    values, errors = noisy_with_a_steady_column(5_000, seed=0)
    scoring = fit_series_scoring(errors, 16, root=True, values=values)
    assert scoring.still_floor[0] > 0 and scoring.still_floor[1] == 0  # steady by nature: never
    test_values, test_errors = noisy_with_a_steady_column(1_000, seed=1)
    test_values[400:460, 0] = test_values[400, 0]  # stuck
    test_errors[400:460, 0] = 1e-4  # easy to reconstruct: its error falls
    scores = series_point_scores(test_errors, scoring, values=test_values)[0]
    unit = scoring.still_unit
    assert scores[410:450].min() > 3 * unit  # 4 halvings and more below the floor
    assert scores[:380].max() < unit and scores[480:].max() < unit  # edges of the batch too
    blind = series_point_scores(test_errors, replace_still(scoring), values=test_values)[0]
    assert blind[410:450].max() < scores[:380].max()  # without: the stuck stretch scores lowest
    again = SeriesScoring.from_dict(scoring.to_dict())
    assert again == scoring
    with pytest.raises(ConfigError, match="values"):
        series_point_scores(test_errors, scoring)
    assert SeriesScoring.from_dict({"column_scale": [1.0], "smoothing": 4}).still_floor == ()


def replace_still(scoring: SeriesScoring) -> SeriesScoring:
    return replace(scoring, still_floor=(), still_unit=0.0)


def test_movement_judges_short_batches_and_edges_like_the_middle() -> None:
    steps = np.arange(20, dtype=np.float64)[:, None] * np.array([[1.0, 0.0]])
    moved = movement(steps)
    assert moved.shape == (20, 2)
    np.testing.assert_allclose(moved[:, 0], 1.0)  # every row: one unit a step
    np.testing.assert_allclose(moved[:, 1], 0.0)
    assert movement(steps[:3]).shape == (3, 2) and np.isinf(movement(steps[:1])).all()


def with_steps(n: int, seed: int, steps: list[int], error: float) -> tuple[np.ndarray, np.ndarray]:
    """A noisy column and a stepping one (replicas: holds still, steps up for a while in normal
    operation); the model errs on the stepping column only around its steps, by `error` at
    the step and less further from it (the windows that cover it)."""
    values, errors = noisy_with_a_steady_column(n, seed)
    near = error * np.exp(-np.abs(np.arange(-32, 32)) / 4)
    for at in steps:
        values[at : at + 200, 1] += 1.0
        for edge in (at, at + 200):
            errors[edge - 32 : edge + 32, 1] = near
    return values, errors


def test_a_stepping_column_is_scaled_by_its_largest_training_error() -> None:
    values, errors = with_steps(40_000, seed=0, steps=[5_000], error=4.0)
    scoring = fit_series_scoring(errors, 16, root=True, values=values)
    assert scoring.still_floor[1] == 0  # it holds still between steps
    assert scoring.column_scale[1] == pytest.approx(STEPPING_SCALE * 4.0)
    # Fresh data: a normal step twice as hard to reconstruct as the one in training, and an
    # incident on the noisy column (its errors at three times their 99.9th percentile).
    fresh_values, fresh_errors = with_steps(2_000, seed=1, steps=[400], error=8.0)
    fresh_errors[1_300:1_360, 0] = 3 * scoring.column_scale[0]
    scores = series_point_scores(fresh_errors, scoring, values=fresh_values)[0]
    incident = scores[1_300:1_360].max()
    assert scores[300:700].max() < incident / 2  # the step stays below the incident
    by_quantile = replace(
        scoring, column_scale=(scoring.column_scale[0], float(np.quantile(errors[:, 1], 0.999)))
    )
    blind = series_point_scores(fresh_errors, by_quantile, values=fresh_values)[0]
    assert blind[300:700].max() > 2 * blind[1_300:1_360].max()  # the step outscored the incident
    # A level it never held (replicas at zero: errors 100x its worst step) still stands out.
    fresh_errors[1_600:1_700, 1] = 400.0
    assert (
        series_point_scores(fresh_errors, scoring, values=fresh_values)[0][1_620:1_680].min() > 10 * incident
    )


def test_inputs_are_clipped_to_the_limits_and_errors_taken_against_the_values() -> None:
    x = np.random.default_rng(4).normal(size=(60, 2)).astype(np.float32)
    x[30:40, 1] = 50.0  # far outside the range the model was trained on
    model = tiny_model(8, 2)
    limits = (np.array([-3.0, -3.0]), np.array([3.0, 3.0]))
    clipped_errors, _ = score_windows(model, iter([x]), 8, 1, "mse", torch.device("cpu"), limits=limits)
    # The same as scoring the clipped values, except that the error is against the real value.
    inside = np.clip(x, -3.0, 3.0)
    with torch.inference_mode():
        windows = torch.from_numpy(
            np.lib.stride_tricks.sliding_window_view(inside, 8, axis=0).transpose(0, 2, 1).copy()
        )
        recon = model(windows).recon.numpy()
    target = np.lib.stride_tricks.sliding_window_view(x, 8, axis=0).transpose(0, 2, 1)
    # The first row is covered by the first window only.
    np.testing.assert_allclose(clipped_errors[0], ((recon[0, 0] - target[0, 0]) ** 2), rtol=1e-5)
    assert clipped_errors[30:40, 1].min() > 40.0**2  # 50 against a reconstruction within 3 or so
    unclipped, _ = score_windows(model, iter([x]), 8, 1, "mse", torch.device("cpu"))
    # Unclipped, the outlier moves column 0's errors too; rows no window shares with it agree.
    assert np.abs(clipped_errors[:, 0] - unclipped[:, 0]).max() > 0
    np.testing.assert_allclose(clipped_errors[:22], unclipped[:22], rtol=1e-5)  # no window reaches row 30


def test_a_window_where_a_resting_column_is_off_its_level_is_looked_at_again_with_it_at_rest() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    x[:, 2] = 1.0
    x[44:52, 2] = 0.0  # rests at 1, steps to 0 in the windows starting at 40 and 48
    model, cpu = tiny_model(8, 3), torch.device("cpu")
    plain, _ = score_windows(model, iter([x]), 8, 8, "mse", cpu)  # stride 8: one window per row
    looked, _ = score_windows(model, iter([x]), 8, 8, "mse", cpu, rest=(np.array([2]), np.array([1.0])))
    at_rest = x.copy()
    at_rest[:, 2] = 1.0
    again, _ = score_windows(model, iter([at_rest]), 8, 8, "mse", cpu)
    np.testing.assert_allclose(looked[:, 2], plain[:, 2], rtol=1e-6)  # its own errors: as seen
    for start in range(0, 80, 8):
        block = slice(start, start + 8)
        if start not in (40, 48):  # at rest throughout: one pass
            np.testing.assert_allclose(looked[block], plain[block], rtol=1e-6)
            continue
        assert np.abs(again[block, :2] - plain[block, :2]).max() > 0  # the step moves them
        for c in (0, 1):  # each column: the pass that errs less on it over the window
            lower = min(plain[block, c], again[block, c], key=lambda e: float(e.sum()))
            np.testing.assert_allclose(looked[block, c], lower, rtol=1e-5, atol=1e-7)
        assert (looked[block, :2].sum(axis=0) <= plain[block, :2].sum(axis=0) + 1e-6).all()


def test_a_stepping_column_rests_where_it_holds_most_of_the_time() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2_000, 4))
    values[:, 1] = 3.0  # constant: never off its level
    values[:, 2] = 0.5
    values[300:500, 2] = 1.5  # steps, resting at 0.5 on 90 % of the rows
    values[:, 3] = np.repeat([0.0, 1.0, 2.0], [700, 650, 650])  # steps, but no level holds half
    cols, levels = rest_levels(values)
    assert cols.tolist() == [2] and levels.tolist() == [0.5]
    assert rest_levels(values[:, [0, 1, 3]]) is None
    assert rest_levels(values[:10]) is None  # too few rows to judge
    scoring = fit_series_scoring(rng.exponential(size=(2_000, 4)), 16, values=values, rest=(cols, levels))
    assert (scoring.rest_columns, scoring.rest_levels) == ((2,), (0.5,))
    assert SeriesScoring.from_dict(scoring.to_dict()) == scoring
    assert SeriesScoring.from_dict({"column_scale": [1.0], "smoothing": 4}).input_rest is None  # saved before


def test_a_column_that_errs_routinely_on_held_out_data_counts_no_more_than_it_usually_errs_there() -> None:
    rng = np.random.default_rng(0)
    train = rng.exponential(1.0, size=(5_000, 3))
    held = rng.exponential(1.0, size=(1_000, 3))
    held[:, 2] *= 40.0  # a column that crept where training never saw it: large errors, routinely
    plain = fit_series_scoring(train, smoothing=1)
    scoring = fit_series_scoring(train, smoothing=1, held_out_errors=held)
    assert scoring.column_scale[:2] == plain.column_scale[:2]  # usual columns: unchanged
    assert scoring.column_scale[2] == pytest.approx(np.quantile(held[:, 2], 0.9))
    assert scoring.column_scale[2] > 5 * plain.column_scale[2]


def test_a_column_wanders_when_its_held_out_errors_and_values_pass_its_training_extremes() -> None:
    rng = np.random.default_rng(1)
    train = rng.exponential(1.0, size=(5_000, 4))
    train[:, 3] *= 1e-9  # a constant column: its errors are the model's numerical noise
    held = rng.exponential(1.0, size=(1_000, 4))
    held[:, 3] *= 1e-6  # a thousand times its training noise, still nothing
    assert wandering_columns(train, held) == ()
    held[:, 2] += 10.0  # routinely beyond the training 99.9th percentile (about 6.9)
    assert wandering_columns(train, held) == (2,)
    held[:, 1] *= 1.5  # errs more, but its 90th percentile stays within the training extremes
    assert wandering_columns(train, held) == (2,)
    assert wandering_columns(train, held[:0]) == ()
    # With the values: a column errs beyond its extremes but its values stay in range (it errs
    # because another column wanders, the model mixing its inputs): it keeps its level.
    seen = rng.normal(size=(5_000, 4))
    later = np.clip(rng.normal(size=(1_000, 4)), seen.min(axis=0), seen.max(axis=0))
    assert wandering_columns(train, held, reference_values=seen, held_out_values=later) == ()
    later[:5, 2] = 100.0  # a few rows beyond its range (0.5 %): still its level
    assert wandering_columns(train, held, reference_values=seen, held_out_values=later) == ()
    later[:20, 2] = 100.0  # 2 % of rows: it wanders
    assert wandering_columns(train, held, reference_values=seen, held_out_values=later) == (2,)
    later[:, 1] += 100.0  # beyond its range, but its errors stay within their extremes
    assert wandering_columns(train, held, reference_values=seen, held_out_values=later) == (2,)
