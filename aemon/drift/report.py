"""A batch's drift report: the calibrated verdict (or the per-column fallback), the small
summary written for every batch (report.html and report.json, a few KB), and Evidently's full
report only when drift is found or asked for. `monitor_batch` does profile, plot and report
in one call."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from aemon.drift.columns import column_group
from aemon.drift.evidently_report import EVIDENTLY_HTML, evidently_columns
from aemon.drift.plots import plot_batch
from aemon.drift.profiles import batch_profile
from aemon.drift.verdict import DriftVerdict, decide_drift, drift_verdict
from aemon.errors import ConfigError, DataError
from aemon.modalities import adapter_of

if TYPE_CHECKING:
    from aemon.results import ScoreResult

log = logging.getLogger(__name__)

REPORT_HTML, REPORT_JSON, PLOT_PNG = "report.html", "report.json", "batch.png"  # every batch
MAX_SUMMARY_COLUMNS = 30  # rows of the summary page's column table (report.json has all)


@dataclass
class DriftResult:
    """The verdict of one batch's drift report.

    `columns`: per profile column, {"drifted": bool, "stat_test": str, "score": float,
    "threshold": float, "group": "input"|"latent"|"score"}; `score` is what Evidently
    compares with `threshold`: the distance in reference standard deviations for
    "wasserstein" (drift when >= threshold), the p-value for "ks" (drift when < threshold).
    `reasons` says why drift was declared (empty when it was not). `html_path` and
    `json_path` are the batch's small summary (a few KB, kept for every batch);
    `evidently_path` is Evidently's full HTML report (about 5 MB), written only when drift is
    detected or a full report is asked for (None otherwise). Without it, the per-column
    entries hold the calibrated distances alone ("stat_test": "wasserstein-normed").

    The verdict is calibrated: `statistic` (the largest normalised Wasserstein distance over
    the input and latent columns, each column's in `columns[name]["distance"]`) is compared
    with `threshold`, the value that batches of `calibrated_size` records drawn from the
    reference exceed at `promised_rate` (`calibrate_drift`). `drifted_share` and the per-column
    "drifted" are Evidently's per-column tests, for people reading the report; they do not
    decide. A reference profile built before calibration existed has no promise: the verdict
    then falls back to `decide_drift` over Evidently's tests and these fields are None.
    """

    drift_detected: bool
    drifted_share: float
    columns: dict[str, dict[str, Any]]
    html_path: Path
    json_path: Path
    plot_path: Path | None = None
    evidently_path: Path | None = None
    reasons: list[str] = field(default_factory=list)
    statistic: float | None = None
    threshold: float | None = None
    promised_rate: float | None = None
    batch_size: int | None = None
    calibrated_size: int | None = None

    @property
    def promise(self) -> str | None:
        """The verdict's promise in words, or None for an uncalibrated (old) reference."""
        if self.threshold is None or self.promised_rate is None:
            return None
        return (
            f"a batch of {self.calibrated_size} records drawn from the reference is called drift "
            f"{100 * self.promised_rate:g} % of the time (statistic {self.statistic:.3g}, "
            f"threshold {self.threshold:.3g})"
        )

    def drifted_columns(self, group: str | None = None) -> list[str]:
        """Names of the drifted columns, of one group or all."""
        return [
            name
            for name, col in self.columns.items()
            if col["drifted"] and (group is None or col["group"] == group)
        ]

    def row(self) -> dict[str, Any]:
        """The keyword arguments of `AnomalyStore.record_drift_report` for this report."""
        return {
            "drift_detected": self.drift_detected,
            "drifted_share": self.drifted_share,
            "details": self.to_dict(),
            "html_path": str(self.html_path),
            "json_path": str(self.json_path),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the anomaly database."""
        return {
            "drift_detected": self.drift_detected,
            "drifted_share": self.drifted_share,
            "reasons": list(self.reasons),
            "columns": {name: dict(col) for name, col in self.columns.items()},
            "html_path": str(self.html_path),
            "json_path": str(self.json_path),
            "plot_path": str(self.plot_path) if self.plot_path is not None else None,
            "evidently_path": str(self.evidently_path) if self.evidently_path is not None else None,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "promised_rate": self.promised_rate,
            "batch_size": self.batch_size,
            "calibrated_size": self.calibrated_size,
            "promise": self.promise,
        }


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: str | Path,
    *,
    method: str = "auto",
    threshold: float | None = None,
    drift_share: float = 0.5,
    batch_size: int | None = None,
    full: bool = True,
    plot_path: Path | None = None,
) -> DriftResult:
    """Compare a batch profile with the reference profile; write the batch's summary
    (report.html, report.json: a few KB) and, when drift is detected, the reference has no
    calibration, or `full` is true, Evidently's full report (evidently.html/.json, ~5 MB).

    Each column gets one Evidently drift test, `method` with `threshold` (None: the
    method's default). "auto" follows Evidently's own size rule with a stricter p-value:
    the two-sample K-S test at p < 0.01 when either profile has at most 1,000 rows (5 % false
    alarms per column, Evidently's default, is too many for a check that sends alerts), else
    the normed Wasserstein distance (drift when >= 0.1 reference standard deviations).
    **Time series should pass "wasserstein"** (`monitor_batch` does): K-S
    p-values assume independent rows, windows of a series are strongly autocorrelated, and
    K-S would cry drift on small clean batches, while a distance is an effect size that does
    not depend on the sample size.

    **The verdict** comes from the reference's calibration when it has one
    (`reference.attrs[CALIBRATION_KEY]`, written by `reference_profile`): drift when the
    statistic (the largest normalised Wasserstein distance over input and latent columns)
    exceeds the threshold calibrated for batches of `batch_size` records (default:
    `current.attrs["n_records"]`, set by `batch_profile`, else its row count), so a batch
    drawn from the reference is called drift at the stated rate (default 1 %). Evidently's
    per-column tests below then only fill the report and `drifted_share`.

    Without a calibration (a profile from an older aemon), the old rule decides: drift is
    detected when the **score** column drifted (the model now sees data it
    reconstructs differently: its flags and p-values no longer mean what they were
    calibrated to mean), or when at least `drift_share` of the **input** columns, or of the
    **latent** columns, drifted. Groups are judged apart so that a wide latent code cannot
    outvote the inputs, nor the other way round. A batch with many true anomalies moves the
    score distribution too: the verdict does not tell a burst of anomalies from drift, the
    alert shows the flagged count beside it. `drifted_share` is the share of all columns
    that drifted (as Evidently's DriftedColumnsCount).
    """
    if not 0 < drift_share <= 1:
        raise ConfigError(f"drift_share must be in (0, 1], got {drift_share}")
    if list(reference.columns) != list(current.columns):
        missing = sorted(set(reference.columns) ^ set(current.columns))
        raise DataError(
            "the batch profile and the reference profile have different columns "
            f"(differing: {missing or 'order only'}); was the reference built for another model version?"
        )
    if len(reference) == 0 or len(current) == 0:
        raise DataError(f"empty profile: reference {len(reference)} rows, batch {len(current)} rows")
    verdict = drift_verdict(reference, current, batch_size=batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if full or verdict is None or verdict.drift_detected:
        columns = evidently_columns(reference, current, out, method, threshold, drift_share)
        share = sum(col["drifted"] for col in columns.values()) / len(columns)
        result = DriftResult(False, share, columns, out / REPORT_HTML, out / REPORT_JSON)
        result.evidently_path = out / EVIDENTLY_HTML
    else:  # the calibrated distances say it all; Evidently would add 5 MB and seconds
        columns = {
            name: {
                "drifted": d > verdict.threshold,
                "stat_test": "wasserstein-normed",
                "score": d,
                "threshold": verdict.threshold,
                "group": column_group(name),
            }
            for name, d in verdict.distances.items()
        }
        share = sum(d > verdict.threshold for d in verdict.distances.values()) / max(len(columns), 1)
        result = DriftResult(False, share, columns, out / REPORT_HTML, out / REPORT_JSON)
    if verdict is None:
        log.warning(
            "the reference profile has no drift calibration (built by an older aemon): "
            "the verdict falls back to per-column tests, which promise no false-drift rate"
        )
        result.drift_detected, result.reasons = decide_drift(result.columns, drift_share)
    else:
        _set_verdict(result, verdict)
    result.plot_path = plot_path
    write_summary(result)
    log.info(
        "drift report %s: %s (%s)",
        result.html_path,
        "drift detected: " + "; ".join(result.reasons) if result.drift_detected else "no drift",
        result.promise or "uncalibrated",
    )
    return result


def write_summary(result: DriftResult) -> None:
    """The batch's small report: report.json (the verdict, its promise, every column) and
    report.html (the same for people, with the batch plot and a link to Evidently's report
    when there is one). Every name is escaped: column names are user data."""
    import html
    import json

    summary = _strict(result.to_dict())
    result.json_path.write_text(json.dumps(summary, indent=1, allow_nan=False, default=_finite))
    folder = result.html_path.parent
    ranked = sorted(result.columns.items(), key=lambda kv: -float(kv[1].get("distance", kv[1]["score"]) or 0))
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(col['group'])}</td>"
        f"<td>{float(col.get('distance', col['score'])):.3g}</td>"
        f"<td>{'yes' if col['drifted'] else ''}</td></tr>"
        for name, col in ranked[:MAX_SUMMARY_COLUMNS]
    )
    hidden = len(ranked) - MAX_SUMMARY_COLUMNS
    more = f"<p>and {hidden} more columns in report.json</p>" if hidden > 0 else ""
    verdict = "Drift detected" if result.drift_detected else "No drift"
    parts = [
        "<!doctype html><meta charset='utf-8'><title>aemon drift report</title>",
        "<style>body{font:14px sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}</style>",
        f"<h1>{verdict}</h1>",
        *(f"<p>{html.escape(r)}</p>" for r in result.reasons),
        f"<p>{html.escape(result.promise or 'uncalibrated reference: per-column tests decide')}</p>",
    ]
    if result.plot_path is not None and result.plot_path.exists():
        plot = html.escape(os.path.relpath(result.plot_path, folder))
        parts.append(f"<img src='{plot}' alt='the batch' style='max-width:100%'>")
    if result.evidently_path is not None:
        full = html.escape(os.path.relpath(result.evidently_path, folder))
        parts.append(f"<p><a href='{full}'>Evidently's full report</a></p>")
    parts.append("<table><tr><th>column</th><th>group</th><th>distance</th><th>drifted</th></tr>")
    parts.append(rows + "</table>" + more)
    result.html_path.write_text("\n".join(parts))


def _strict(value: Any) -> Any:
    """`value` with NaN/inf floats as None: `default=` never sees floats (an input of 1e308
    gives infinite distances)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _finite(value: Any) -> Any:
    """JSON for numpy scalars; None for NaN/inf (strict JSON has no NaN)."""
    number = float(value)
    return number if math.isfinite(number) else None


def _set_verdict(result: DriftResult, verdict: DriftVerdict) -> None:
    """Copy a calibrated verdict into `result`, with its reason."""
    distances, threshold = verdict.distances, verdict.threshold
    for name, d in distances.items():
        result.columns[name]["distance"] = d
    result.drift_detected = verdict.drift_detected
    result.statistic, result.threshold = verdict.statistic, threshold
    result.promised_rate = verdict.promised_rate
    result.batch_size, result.calibrated_size = verdict.batch_size, verdict.calibrated_size
    if verdict.drift_detected:
        moved = sorted((n for n, d in distances.items() if d > threshold), key=lambda n: -distances[n])
        shown = ", ".join(f"{n} ({distances[n]:.2g})" for n in moved[:5])
        more = f" and {len(moved) - 5} more" if len(moved) > 5 else ""
        result.reasons = [
            f"drift statistic {verdict.statistic:.3g} above its threshold {threshold:.3g}: "
            f"columns beyond it, in reference standard deviations: {shown}{more}; a batch of "
            f"{verdict.calibrated_size} records drawn from the reference goes beyond it "
            f"{100 * verdict.promised_rate:g} % of the time"
        ]


def monitor_batch(
    result: ScoreResult, reference: pd.DataFrame, out_dir: str | Path, *, full: bool = False
) -> DriftResult:
    """Profile a scored batch and write its drift report to `out_dir`: the small summary
    always; the batch plot (batch.png) when records are flagged or drift is found; Evidently's
    full report on drift. `full`: both, whatever the batch. Everything comes from `result`
    (the batch it read, the codes of its scoring pass).

    A plot that cannot be drawn is logged and left out: it must not cost the batch its report.
    """
    current = batch_profile(result)
    verdict = drift_verdict(reference, current, batch_size=result.n_records)
    out = Path(out_dir)
    plot: Path | None = None
    # A quiet batch needs no picture: drawing one costs about a second per million points.
    if full or result.n_flagged or verdict is None or verdict.drift_detected:
        try:
            plot = plot_batch(result, out / PLOT_PNG)
        except Exception as exc:  # a plot is a convenience; the report and verdict stand
            log.warning("could not draw the batch plot in %s: %s", out_dir, exc)
    # Series windows are autocorrelated: K-S p-values would cry drift (see drift_report).
    method = adapter_of(result.batch).drift_test if result.batch is not None else "auto"
    return drift_report(
        reference, current, out, method=method, batch_size=result.n_records, full=full, plot_path=plot
    )
