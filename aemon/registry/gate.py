"""The quality gate: does a new version replace the champion? Pure policy on numbers
(held-out metrics of both versions, the threshold's promise); no MLflow, no IO."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

FPR_SLACK = 2.0  # held-out FPR may reach FPR_SLACK * target_fpr + 1/n_normal
AUROC_TOLERANCE = 1e-3  # "not worse": challenger AUROC >= champion AUROC - this


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    numbers: dict[str, float] = field(default_factory=dict)


def quality_gate(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    calibration_fpr: float,
    n_calibration: int,
    target_fpr: float | None,
    false_alarms: str | None = None,
    force: bool = False,
    champion_error: str | None = None,
) -> GateDecision:
    """Decide whether a new version replaces the champion.

    `challenger`: the new version's `evaluate_detector` metrics on held-out data ({} when none
    was held out); `champion`: the champion's metrics on the *same* data, None when there is
    no champion ({} when they could not be measured: no held-out data). Rules, in order:

    1. `force` (``--promote``) promotes;
    2. no champion yet promotes;
    3. the champion could not score the held-out data (`champion_error`: schema changed...)
       rejects: the two are not comparable, promote by hand;
    4. the false-positive rate must keep the threshold's promise: held-out FPR (calibration
       FPR when nothing was held out) <= FPR_SLACK * target_fpr + 1 / n_normal. The slack
       absorbs sampling noise of small, autocorrelated held-out sets while still catching a
       broken threshold. For a false-alarm budget (`false_alarms`, series events) instead:
       the held-out events that touch no labelled anomaly must not break the budget (the
       Poisson test of `aemon.drift.event_rate_check`, p < 0.001 and 1.5x the promise).
       Skipped for an f1 threshold, and for a budget with nothing held out;
    5. with labels on both sides, AUROC must not be worse than the champion's
       (>= champion - AUROC_TOLERANCE); without labels rule 4 decides alone.
    """
    numbers: dict[str, float] = {"calibration_fpr": calibration_fpr}
    for key in ("fpr", "auroc", "auprc", "f1"):
        if key in challenger:
            numbers[f"holdout_{key}"] = challenger[key]
    if champion:
        numbers.update({f"champion_{k}": champion[k] for k in ("fpr", "auroc") if k in champion})
    if force:
        return GateDecision(True, "forced (promote=True)", numbers)
    if champion is None:
        return GateDecision(True, "first champion: no champion yet", numbers)
    if champion_error is not None:
        return GateDecision(
            False,
            f"champion cannot score the held-out data ({champion_error}); not comparable, promote by hand",
            numbers,
        )
    # What was checked, said as it happened: the promote reason names both checks.
    kept, checked = _promise_kept(
        challenger,
        numbers,
        calibration_fpr=calibration_fpr,
        n_calibration=n_calibration,
        target_fpr=target_fpr,
        false_alarms=false_alarms,
    )
    if not kept:
        return GateDecision(False, checked, numbers)
    if "auroc" in challenger and "auroc" in champion:
        new, old = challenger["auroc"], champion["auroc"]
        if new < old - AUROC_TOLERANCE:
            return GateDecision(
                False,
                f"AUROC {new:.4f} worse than the champion's {old:.4f} on the same held-out data",
                numbers,
            )
        return GateDecision(
            True,
            f"AUROC {new:.4f} not worse than the champion's {old:.4f} on the same held-out data",
            numbers,
        )
    return GateDecision(True, f"{checked}; {_not_compared(challenger)}", numbers)


def _promise_kept(
    challenger: Mapping[str, float],
    numbers: dict[str, float],
    *,
    calibration_fpr: float,
    n_calibration: int,
    target_fpr: float | None,
    false_alarms: str | None,
) -> tuple[bool, str]:
    """Rule 4: (whether the threshold's promise held, what was checked); adds to `numbers`."""
    if false_alarms is not None and challenger.get("span_days", 0.0) > 0 and "n_false_events" in challenger:
        from aemon.drift.rates import event_rate_check

        n_false, days = int(challenger["n_false_events"]), challenger["span_days"]
        check = event_rate_check(n_false, pd.Timedelta(days=days), false_alarms)
        numbers.update(holdout_false_events=n_false, holdout_days=days, holdout_false_events_p=check.p_value)
        said = f"{n_false} held-out false alarm(s) in {days:.3g} days"
        if check.broken:
            return False, f"{said}: more than the {false_alarms} promised (p = {check.p_value:.2g})"
        return True, f"{said}, within the {false_alarms} promised"
    if target_fpr is None:
        return True, "no pointwise false-positive target to check (event budget or f1 threshold)"
    if "fpr" in challenger:
        fpr, n_normal, where = challenger["fpr"], challenger.get("n_normal", 1.0), "held-out"
    else:
        fpr, n_normal, where = calibration_fpr, float(n_calibration), "calibration"
    limit = FPR_SLACK * target_fpr + 1.0 / max(n_normal, 1.0)
    numbers.update(fpr_limit=limit, target_fpr=target_fpr)
    rate = f"{where} false-positive rate {fpr:.4g}"
    if fpr > limit:
        return False, f"{rate} above the limit {limit:.4g} (target {target_fpr:g})"
    return True, f"{rate} within the limit {limit:.4g} (target {target_fpr:g})"


def _not_compared(challenger: Mapping[str, float]) -> str:
    """Why a promoted version was not compared with the champion on AUROC."""
    if "fpr" not in challenger:
        return "nothing held out, so not compared with the champion"
    return "no labels on the held-out data, so AUROC not compared with the champion's"
