"""Drift reports and score monitoring: is a batch still like the data the model was built on?

A *profile* (`profiles`) is a table with one row per sampled record and three groups of
columns (`columns`): **input** (the series' value columns, or per-image statistics),
**latent** (the encoder's code) and **score** (higher = more anomalous).

The reference profile is computed once per model version and saved with it
(`save_profile`/`load_profile`); each scored batch gets a `batch_profile` from its score
result (the batch as read and the latent codes of the scoring pass: nothing is read again),
and `drift_report` (`report`) compares the two: a calibrated verdict (`verdict`), a small
summary (report.html and report.json, a few KB), and Evidently's full HTML
(`evidently_report`, the only module that imports Evidently) only when drift is found or asked
for. `plot_batch` (`plots`) draws the batch for people; `monitor_batch` does profile, plot and
report in one call. `flag_rate_check` and `event_rate_check` (`rates`) ask whether a model
raises more alarms than it was calibrated for.
"""

from aemon.drift.plots import plot_batch
from aemon.drift.profiles import batch_profile, load_profile, reference_profile, save_profile
from aemon.drift.rates import (
    FlagRateCheck,
    check_flag_rate,
    check_holdout,
    event_rate_check,
    flag_rate_check,
)
from aemon.drift.report import DriftResult, drift_report, monitor_batch
from aemon.drift.verdict import CALIBRATION_KEY, drift_verdict
from aemon.modalities.images import IMAGE_STATS

__all__ = [
    "CALIBRATION_KEY",
    "IMAGE_STATS",
    "DriftResult",
    "FlagRateCheck",
    "batch_profile",
    "check_flag_rate",
    "check_holdout",
    "drift_report",
    "drift_verdict",
    "event_rate_check",
    "flag_rate_check",
    "load_profile",
    "monitor_batch",
    "plot_batch",
    "reference_profile",
    "save_profile",
]
