"""The default time-series promise, checked the way users feel it: false alarms are events per
unit of time, and on fresh normal data they stay within the calibrated budget across seeds."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy.stats import poisson

from aemon import Detector
from aemon.calibration import parse_rate
from aemon.detector import DEFAULT_FALSE_ALARMS
from aemon.synthetic import make_series

SEEDS = range(5)
REFERENCE_ROWS = 4_032  # two weeks at 5-minute steps
FRESH_ROWS = 8_064  # four weeks


@pytest.fixture(scope="module")
def false_events() -> list[tuple[int, float]]:
    """Per seed: (events on fresh normal data, weeks scored), default detector (no options)."""
    out = []
    for seed in SEEDS:
        reference, _, _ = make_series(REFERENCE_ROWS, 3, seed=100 + seed, flat_columns=2)
        det = Detector(epochs=15, seed=seed, progress=False).fit(reference)
        assert det.threshold_info_.method == "event_budget"
        fresh, _, _ = make_series(FRESH_ROWS, 3, seed=200 + seed, start="2026-02-01", flat_columns=2)
        res = det.score(fresh)
        assert res.events is not None
        span = pd.Timedelta(fresh.timestamp.iloc[-1] - fresh.timestamp.iloc[0])
        out.append((len(res.events), span / pd.Timedelta(weeks=1)))
    return out


def test_false_events_stay_within_the_default_budget_across_seeds(
    false_events: list[tuple[int, float]],
) -> None:
    count, period = parse_rate(DEFAULT_FALSE_ALARMS)
    observed = sum(n for n, _ in false_events)
    weeks = sum(w for _, w in false_events)
    promised = count * weeks * (pd.Timedelta(weeks=1) / period)
    # One-sided Poisson test: if the true rate were the budget, would this many events or more
    # be unusual (p < 1 %)? A broken calibration (3x the budget) fails it with near certainty.
    p = poisson.sf(observed - 1, promised)
    assert p >= 0.01, f"{observed} false events in {weeks:.0f} weeks, budget {promised:.0f} (p = {p:.2g})"


def test_false_events_are_not_a_flood_in_any_seed(false_events: list[tuple[int, float]]) -> None:
    # The pointwise default flagged ~1 % of points: hundreds of events a month. Events must not.
    count, period = parse_rate(DEFAULT_FALSE_ALARMS)
    for n, weeks in false_events:
        assert n <= 4 * count * weeks * (pd.Timedelta(weeks=1) / period) + 3, false_events
