"""The fast paths behind `aemon benchmark speed` give the same answers as the plain ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from aemon.calibration import describe_events, find_events
from aemon.data.timeseries import _parse_timestamps
from aemon.models import Autoencoder, default_spec
from aemon.scoring import WindowScorer


def _brute_force(model: Autoencoder, z: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Per-point mean error over covering windows, one window at a time (plus the tail window)."""
    n = len(z)
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    acc = np.zeros_like(z, dtype=np.float64)
    cnt = np.zeros(n)
    with torch.inference_mode():
        for a in starts:
            x = torch.from_numpy(z[a : a + window][None].copy())
            acc[a : a + window] += ((model(x).recon - x) ** 2)[0].numpy()
            cnt[a : a + window] += 1
    return acc / cnt[:, None]


@pytest.mark.parametrize(("stride", "chunk", "pieces"), [(1, 7, 3), (3, 5, 2), (1, 10_000, 1), (7, 4, 4)])
def test_window_scorer_matches_brute_force(stride: int, chunk: int, pieces: int) -> None:
    torch.manual_seed(0)
    model = Autoencoder(default_spec("dense", "timeseries", (8, 2))).eval()
    z = np.random.default_rng(0).normal(size=(61, 2)).astype(np.float32)
    scorer = WindowScorer(model, 8, stride, "mse", torch.device("cpu"), chunk=chunk)
    parts = [scorer.push(p).errors for p in np.array_split(z, pieces)]
    parts.append(scorer.finish().errors)
    np.testing.assert_allclose(np.concatenate(parts), _brute_force(model, z, 8, stride), rtol=1e-5)


@pytest.mark.parametrize(
    "values",
    [
        ["2026-01-01 00:00:00", "2026-01-01T00:05:00", "2026-01-01 00:10:00.5"],  # ISO: fast path
        ["01/02/2026 10:00", "01/02/2026 10:05", "01/02/2026 10:10"],  # not ISO: mixed parser
        ["2026-01-01 00:00:00", "not a time", "2026-01-01 00:10:00"],  # a bad value stays NaT
    ],
)
def test_parse_timestamps_agrees_with_mixed(values: list[str]) -> None:
    raw = pd.Series(values, dtype=object)
    expected = pd.to_datetime(raw, errors="coerce", format="mixed")
    pd.testing.assert_series_equal(_parse_timestamps(raw), expected)


def test_describe_events_vectorised() -> None:
    scores = np.array([0, 5, 6, 0, 0, 9, 0, 0, 0, 7], dtype=float)
    col_err = np.stack([scores, 2 * scores], axis=1)
    stamps = pd.date_range("2026-01-01", periods=10, freq="5min").to_numpy()
    events = describe_events(find_events(scores > 1, 1), scores, col_err, ("a", "b"), stamps)
    assert events.start_index.tolist() == [1, 5, 9] and events.end_index.tolist() == [2, 5, 9]
    assert events.peak_score.tolist() == [6.0, 9.0, 7.0]
    assert events.peak_time.iloc[0] == pd.Timestamp(stamps[2])
    assert events.contributions.iloc[0] == {"a": pytest.approx(1 / 3), "b": pytest.approx(2 / 3)}
    assert events.n_points.tolist() == [2, 1, 1]
    empty = describe_events(find_events(scores > 100, 1), scores, col_err, ("a", "b"), stamps)
    assert len(empty) == 0 and "peak_score" in empty.columns
