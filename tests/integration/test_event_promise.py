"""The default time-series promise, checked the way users feel it: false alarms are events per
unit of time, and on fresh normal data they stay within the calibrated budget across seeds.
Every other seed has two near-constant columns, one of which rests at a level and steps off it
now and then; the others a column that creeps (disk used), so fresh data lies at levels its
reference never reached."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import poisson

from aemon import Detector
from aemon.calibration import parse_rate
from aemon.detector import DEFAULT_FALSE_ALARMS
from aemon.drift import check_flag_rate, check_holdout
from aemon.evaluation import evaluate_result
from aemon.results import ScoreResult
from aemon.synthetic import make_series

SEEDS = range(6)
REFERENCE_ROWS = 4_032  # two weeks at 5-minute steps
FRESH_ROWS = 8_064  # four weeks


@pytest.fixture(scope="module")
def scored() -> list[tuple[Detector, ScoreResult, float]]:
    """Per seed: the default detector (no options), its result on fresh normal data, and the
    weeks scored."""
    out = []
    for seed in SEEDS:
        shape = {"flat_columns": 2} if seed % 2 else {"creeping_columns": 1}
        reference, _, _ = make_series(REFERENCE_ROWS, 3, seed=100 + seed, **shape)
        det = Detector(seed=seed, progress=False).fit(reference)  # the defaults
        assert det.threshold_info_.method == "event_budget"
        if not seed % 2:  # on fresh data the disk is 13 points above anything seen
            assert det.level_free_columns == ("creep_0",)  # and no column it confused
        fresh, _, _ = make_series(FRESH_ROWS, 3, seed=200 + seed, start="2026-02-01", **shape)
        res = det.score(fresh)
        assert res.events is not None
        span = pd.Timedelta(fresh.timestamp.iloc[-1] - fresh.timestamp.iloc[0])
        out.append((det, res, span / pd.Timedelta(weeks=1)))
    return out


@pytest.fixture(scope="module")
def false_events(scored: list[tuple[Detector, ScoreResult, float]]) -> list[tuple[int, float]]:
    """Per seed: (events on fresh normal data, weeks scored)."""
    return [(len(res.events), weeks) for _, res, weeks in scored if res.events is not None]


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


def test_each_model_keeps_its_promise_within_twice_the_budget(
    false_events: list[tuple[int, float]],
) -> None:
    # A user has one model, so the promise must hold for each, not only on average. The tail
    # is fitted at upper 80 % bounds: with the bare estimates, one of these six models raised
    # 10 false events in 4 weeks (2.5x) and six other trainings up to 12 (3x).
    count, period = parse_rate(DEFAULT_FALSE_ALARMS)
    for n, weeks in false_events:
        assert n <= 2 * count * weeks * (pd.Timedelta(weeks=1) / period), false_events


def test_normal_batches_break_no_promise_across_seeds(
    scored: list[tuple[Detector, ScoreResult, float]],
) -> None:
    """The batch check (events per week, then the share of points flagged against target_fpr)
    and the training check of a held-out end are tests at alpha = 0.001 each: on four weeks
    of fresh normal data, none of the six default models may break either."""
    for det, res, _ in scored:
        batch = check_flag_rate(det, res)
        assert batch is not None and not batch.broken, batch.message
        held = check_holdout(det, evaluate_result(det, res, None))
        assert held is not None and not held.broken, held.message


def test_a_resting_columns_steps_at_new_hours_are_blamed_on_it_not_the_others(
    scored: list[tuple[Detector, ScoreResult, float]],
) -> None:
    """flat_1 rests at 12 and steps to 13 now and then; fresh data holds steps longer than
    any in the reference, at hours it never stepped at. Seen as they are, such inputs garbled
    the other columns' reconstructions: seed 5 flagged 7.7 % of its normal rows in a 30-hour
    alarm blamed on the metrics (flat_1's share 0.02), and seed 1's threshold sat at 21 where
    its training part needed 0.08. Looked at again with flat_1 at rest, the metrics are
    reconstructed as usual and the blame, if any, is flat_1's."""
    shares = []
    for det, res, _ in scored:
        if "flat_1" not in det.schema_.columns:
            continue
        assert det.series_scoring_ is not None and det.series_scoring_.rest_columns == (4,)  # not flat_0
        assert res.is_anomaly.mean() < 0.03 and res.events is not None
        stepped = np.r_[0, np.cumsum(res.batch.values[:, 4] != 12.0)]
        at = res.events[stepped[res.events.end_index + 1] > stepped[res.events.start_index]]
        shares += [c["flat_1"] for c in at.contributions]
    assert shares and np.mean(shares) > 0.4, shares
