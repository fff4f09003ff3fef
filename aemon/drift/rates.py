"""Score monitoring: does a batch raise more alarms than its model promised? A binomial test
of the flag rate against the calibrated false-positive rate, or a Poisson test of the event
rate against a false-alarm budget."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pandas as pd

from aemon.calibration import parse_rate
from aemon.errors import ConfigError

if TYPE_CHECKING:
    from aemon.detector import Detector
    from aemon.results import ScoreResult


@dataclass(frozen=True)
class FlagRateCheck:
    """Whether a batch's flag rate keeps the false-positive rate the model promised.

    `p_value`: one-sided binomial test of "the true flag rate is <= the promise";
    `broken`: p_value < alpha and the observed rate is at least `min_ratio` times the promise.
    """

    n_flagged: int
    n_records: int
    observed_rate: float
    promised_rate: float
    p_value: float
    broken: bool
    message: str


def flag_rate_check(
    n_flagged: int,
    n_records: int,
    target_fpr: float,
    *,
    alpha: float = 0.001,
    block_size: int = 1,
    min_ratio: float = 1.5,
) -> FlagRateCheck:
    """Does the batch flag more than the `target_fpr` the threshold was calibrated for?

    A broken promise means the data or the model changed (or the threshold is wrong): the
    flags stop meaning "1 in 100 normal records". The test is a one-sided binomial test (its
    tail, as scipy.stats.binomtest computes it). It assumes independent records: true for
    images, not for time series, where a point's score is the mean over the windows covering
    it, so neighbours are flagged together and a plain test on points would be
    anti-conservative (too many broken promises). Pass `block_size` = the window length for series:
    records are then counted in blocks (n / block_size trials, the flagged count scaled
    alike), which is conservative.
    `min_ratio` keeps huge batches from failing on a practically irrelevant excess.

    Example:
        >>> flag_rate_check(90, 1000, 0.01).message
        'this model flags 9.0 % where it promised 1.0 % (p = 1.3e-54)'
    """
    # scipy.special, not scipy.stats: the same tail sums, without 1-2 s of imports per command.
    from scipy.special import bdtrc

    if not 0 < target_fpr < 1:
        raise ConfigError(f"target_fpr must be in (0, 1), got {target_fpr}")
    if n_records < 0 or not 0 <= n_flagged <= max(n_records, 0):
        raise ConfigError(f"need 0 <= n_flagged <= n_records, got {n_flagged} of {n_records}")
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    if n_records == 0:
        return FlagRateCheck(0, 0, 0.0, target_fpr, 1.0, False, "no records to check the flag rate on")
    observed = n_flagged / n_records
    n_trials = max(1, n_records // block_size)
    k = min(n_trials, round(n_flagged * n_trials / n_records))
    p_value = float(bdtrc(k - 1, n_trials, target_fpr)) if k else 1.0  # P(X >= k)
    broken = p_value < alpha and observed >= min_ratio * target_fpr
    rates = f"{100 * observed:.1f} % where it promised {100 * target_fpr:.1f} % (p = {p_value:.2g})"
    message = f"this model flags {rates}" if broken else f"flag rate within the promise: {rates}"
    return FlagRateCheck(n_flagged, n_records, observed, target_fpr, p_value, broken, message)


def event_rate_check(
    n_events: int, span: pd.Timedelta, budget: str, *, alpha: float = 0.001, min_ratio: float = 1.5
) -> FlagRateCheck:
    """Does a series batch raise more alarms (events) than the false-alarm `budget` promised?

    One-sided Poisson test of "the true event rate is <= the budget" over the batch's `span`;
    broken when p < alpha and the count is at least `min_ratio` times the promise. Rates in
    the result are events per day.

    Example:
        >>> event_rate_check(6, pd.Timedelta(days=1), "1/week").message.split(":")[0]
        '6 alarms in 1 days, more than the 1/week promised on normal data (p = 1e-08)'
    """
    count, period = parse_rate(budget)
    days = max(span / pd.Timedelta(days=1), 0.0)
    promised = count * (span / period)
    p_value = poisson_tail(n_events, promised)
    broken = p_value < alpha and n_events >= min_ratio * promised
    # The promise is about normal data: a batch with incidents in it breaks it rightly, so the
    # message says what the excess may mean rather than blaming the model.
    what = f"{n_events} alarms in {days:.3g} days"
    message = (
        f"{what}, more than the {budget} promised on normal data (p = {p_value:.2g}): "
        "incidents, or data unlike the reference"
        if broken
        else f"alarms within the promise: {what}, at most {budget} promised (p = {p_value:.2g})"
    )
    per_day = count / (period / pd.Timedelta(days=1))
    observed = n_events / days if days > 0 else 0.0
    return FlagRateCheck(n_events, n_events, observed, per_day, p_value, broken, message)


def poisson_tail(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean), from the smaller of the two tails, each summed from
    its largest term outwards in the log domain (float precision, also for tails of 1e-300).
    Pure Python: scipy's import costs a one-off `aemon score` more than the sum does."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if k - 1 < mean:  # the upper tail is large: 1 - P(X <= k - 1)
        i = k - 1
        term = math.exp(-mean + i * math.log(mean) - math.lgamma(i + 1))
        lower = 0.0
        while i >= 0 and term > 1e-17 * lower:
            lower += term
            term *= i / mean
            i -= 1
        return max(0.0, 1.0 - lower)
    term = math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1))
    upper, i = 0.0, k
    while term > 1e-17 * upper:
        upper += term
        i += 1
        term *= mean / i
    return min(1.0, upper)


# Within an event budget, a batch breaks on its share of flagged points only at this many times
# target_fpr: the event threshold keeps the pointwise rate on average, not in every batch. On
# four weeks of fresh normal data, one of the six default models of the promise test flagged
# 7.7 % (one 30-hour alarm on a near-constant column's normal steps, p = 7e-7 against 1 %);
# the creeping disks of a newcomer's data flagged 25-66 %.
LONG_ALARM_RATIO = 20.0


def check_flag_rate(detector: Detector, result: ScoreResult, *, alpha: float = 0.001) -> FlagRateCheck | None:
    """The batch's alarms against its detector's promise (None: no promise): events per time
    for a false-alarm budget (`event_rate_check`), and the share of points flagged against
    `target_fpr` (`flag_rate_check`; series are counted in blocks of one window), which the
    event threshold never goes below: a few events can hold most of a batch when the data
    has left the reference (a column creeping past its range flagged 38 % of a week in one
    64-hour event, within a 1/week budget).
    """
    budget = detector.adapter_.event_budget(detector)
    block = detector.adapter_.block_size(detector.window)
    if budget is not None and result.events is not None and result.timestamps is not None:
        stamps = result.timestamps
        span = pd.Timedelta(stamps[-1] - stamps[0]) if len(stamps) else pd.Timedelta(0)
        events = event_rate_check(len(result.events), span, budget, alpha=alpha)
        if events.broken:
            return events
        points = flag_rate_check(
            result.n_flagged,
            result.n_records,
            detector.target_fpr,
            alpha=alpha,
            block_size=block,
            min_ratio=LONG_ALARM_RATIO,
        )
        if not points.broken:
            return events
        return replace(points, message=_long_alarms(points, result))
    promise = detector.threshold_info_.promised_fpr
    if promise is None:
        return None
    return flag_rate_check(result.n_flagged, result.n_records, promise, alpha=alpha, block_size=block)


def check_holdout(detector: Detector, metrics: Mapping[str, float]) -> FlagRateCheck | None:
    """The held-out end of a reference (`evaluate_detector`'s `metrics`) against the pointwise
    `target_fpr` an event threshold keeps; None without an event budget or normal points. A
    first version is promoted whatever it shows, so training says it: broken, the reference's
    last days are unlike what the model was fitted on, and alarms on new data will run long.
    """
    if detector.adapter_.event_budget(detector) is None or "fpr" not in metrics:
        return None
    n_normal = int(metrics.get("n_normal", 0))
    check = flag_rate_check(
        min(n_normal, round(metrics["fpr"] * n_normal)),
        n_normal,
        detector.target_fpr,
        block_size=detector.adapter_.block_size(detector.window),
        min_ratio=LONG_ALARM_RATIO,
    )
    if not check.broken:
        return check
    return replace(
        check,
        message=f"the held-out end of the reference flags {100 * check.observed_rate:.1f} % of its "
        f"points, where normal data flags at most {100 * check.promised_rate:.1f} % "
        f"(p = {check.p_value:.2g}): "
        "its last days are unlike what the model was fitted on (a column that creeps, a new level?), "
        "so alarms on new data may run long; a reference that covers such days helps",
    )


def _long_alarms(points: FlagRateCheck, result: ScoreResult) -> str:
    """What a user needs of a batch whose few alarms hold most of it: how much, how long,
    and which columns drove it."""
    ev = result.events
    assert ev is not None and result.timestamps is not None
    stamps = result.timestamps
    spans = list(zip(ev.start_index, ev.end_index, strict=True))
    longest = max((pd.Timedelta(stamps[b] - stamps[a]) for a, b in spans), default=None)
    share: dict[str, float] = {}
    for (a, b), contributions in zip(spans, ev.contributions, strict=True):
        for column, part in (contributions or {}).items():
            share[column] = share.get(column, 0.0) + float(part) * (b - a + 1)
    total = sum(share.values())
    top = [(c, v / total) for c, v in sorted(share.items(), key=lambda kv: -kv[1])[:2]] if total > 0 else []
    columns = ", ".join(f"{c} {100 * v:.0f} %" for c, v in top if v >= 0.1)
    hours = f", the longest {longest / pd.Timedelta(hours=1):.3g} h" if longest is not None else ""
    return (
        f"{100 * points.observed_rate:.1f} % of the records flagged in {len(ev)} alarm(s){hours}, "
        f"where normal data flags at most {100 * points.promised_rate:.1f} % (p = {points.p_value:.2g}): "
        "incidents, or data unlike the reference"
        + (f" (most of the error from {columns})" if columns else "")
    )
