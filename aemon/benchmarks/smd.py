"""SMD suite: real multivariate server metrics (Server Machine Dataset, OmniAnomaly, KDD 2019),
aemon against PyOD's AutoEncoder at its default threshold, on the same data in the same run.

Data: 3 machines of 38 metrics at 1-minute steps (already min-max scaled, several columns
constant in training), a train file without labels (treated as normal) and a test file with
one 0/1 label per row; each run of 1s in the test labels is one incident segment.

Protocol, per machine:
- aemon: `Detector(modality="timeseries", **detector_args).fit(train)` with a synthetic 1-min
  `timestamp` column from 2026-01-01 (the files have none; event budgets such as "1/day" need
  time), then `score(test)` with timestamps continuing after train. Events: `ScoreResult.events`,
  i.e. the detector's own threshold calibrated on its held-out reference tail; no labels.
- PyOD: `pyod.models.auto_encoder.AutoEncoder` with its default arguments on the raw rows
  (38 features a point, no windows), fitted on train; `decision_function(test)` for the
  rankings; its default `predict` (threshold at the `contamination=0.1` quantile of its
  training scores) gives flagged points, joined into events by `find_events` with aemon's
  event gap (and, beside it, with gap 0).
- Event counts as Orion's overlapping segments (`overlap_counts`): a segment overlapped by an
  event is a TP, a segment overlapped by none a FN, an event overlapping no segment a FP; no
  point adjustment. AUPRC and AUROC of the per-point scores (sklearn). Seconds: fit + score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from aemon.benchmarks.common import SuiteResult, progress, require, timed
from aemon.benchmarks.nab_metrics import Counts, Interval, overlap_counts
from aemon.calibration import find_events
from aemon.errors import DataError

log = logging.getLogger(__name__)

MACHINES = ("machine-1-2", "machine-2-1", "machine-3-2")
QUICK_MACHINE = "machine-1-2"  # its first 6,000 test rows hold 3 labelled segments
QUICK_ROWS = 6_000
START = pd.Timestamp("2026-01-01")
STEP = pd.Timedelta(minutes=1)
SMD_DETECTOR: dict[str, Any] = {}  # aemon's defaults
DETECTORS = ("aemon", "PyOD AutoEncoder", "PyOD AutoEncoder, gap 0")


@dataclass
class Machine:
    name: str
    train: pd.DataFrame  # timestamp, m01..m38
    test: pd.DataFrame
    labels: np.ndarray  # bool per test row
    segments: list[Interval]  # labelled incidents, inclusive test-row ranges

    @property
    def features(self) -> list[str]:
        return [c for c in self.train.columns if c != "timestamp"]


def segments_from_labels(labels: np.ndarray) -> list[Interval]:
    """Runs of 1s in a 0/1 label array as inclusive [start, end] row ranges."""
    return [(int(a), int(b)) for a, b in find_events(np.asarray(labels).astype(bool), 0)]


def spans(events: np.ndarray | pd.DataFrame | None) -> list[Interval]:
    """Events as inclusive row ranges, from `find_events` output or `ScoreResult.events`."""
    if events is None:
        return []
    if isinstance(events, pd.DataFrame):
        return [(int(a), int(b)) for a, b in zip(events["start_index"], events["end_index"], strict=True)]
    return [(int(a), int(b)) for a, b in events]


def _frame(values: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    cols = [f"m{i:02d}" for i in range(1, values.shape[1] + 1)]  # 1-based, as interpretation_label
    frame = pd.DataFrame(values, columns=cols)
    frame.insert(0, "timestamp", pd.date_range(start, periods=len(values), freq=STEP))
    return frame


def load_machine(data_dir: Path, name: str, max_rows: int | None = None) -> Machine:
    """One machine's train and test files as frames with synthetic 1-min timestamps (test
    continues after train), with its test labels and incident segments."""
    root = require(data_dir / "smd", "SMD data (smd/)")
    train = np.loadtxt(require(root / "train" / f"{name}.txt.gz", f"SMD train file {name}"), delimiter=",")
    test = np.loadtxt(require(root / "test" / f"{name}.txt.gz", f"SMD test file {name}"), delimiter=",")
    labels = np.loadtxt(require(root / "test_label" / f"{name}.txt", f"SMD labels {name}"), dtype=np.int64)
    if len(labels) != len(test):
        raise DataError(f"{len(labels)} labels for {len(test)} test rows", source=name)
    train, test, labels = train[:max_rows], test[:max_rows], labels[:max_rows]
    flags = labels.astype(bool)
    return Machine(
        name,
        _frame(train, START),
        _frame(test, START + len(train) * STEP),
        flags,
        segments_from_labels(flags),
    )


@dataclass
class Outcome:
    """One detector on one machine."""

    counts: Counts
    n_events: int
    auprc: float
    auroc: float
    fit_s: float
    score_s: float

    def row(self) -> dict[str, Any]:
        return {
            "event_f1": self.counts.f1,
            "counts": vars(self.counts),
            "n_events": self.n_events,
            "auprc": self.auprc,
            "auroc": self.auroc,
            "fit_s": round(self.fit_s, 2),
            "score_s": round(self.score_s, 2),
        }


def evaluate(
    segments: Sequence[Interval],
    events: Sequence[Interval],
    labels: np.ndarray,
    scores: np.ndarray,
    fit_s: float,
    score_s: float,
) -> Outcome:
    """Overlap counts of `events` against `segments`, and the rankings of `scores`."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=np.finfo(np.float64).max)
    return Outcome(
        overlap_counts(segments, events),
        len(events),
        float(average_precision_score(labels, scores)),
        float(roc_auc_score(labels, scores)),
        fit_s,
        score_s,
    )


def pool_outcomes(
    results: dict[str, dict[str, Outcome]], dets: Sequence[str]
) -> tuple[dict[str, Counts], dict[str, dict[str, float]], dict[str, float], dict[str, int]]:
    """Per detector over the data sets of `results`: summed counts, mean AUPRC/AUROC, seconds
    (fit + score) and events."""
    names = list(results)
    pooled = {d: sum((results[n][d].counts for n in names), Counts()) for d in dets}
    mean = {
        d: {k: float(np.mean([getattr(results[n][d], k) for n in names])) for k in ("auprc", "auroc")}
        for d in dets
    }
    seconds = {d: float(sum(results[n][d].fit_s + results[n][d].score_s for n in names)) for d in dets}
    n_events = {d: sum(results[n][d].n_events for n in names) for d in dets}
    return pooled, mean, seconds, n_events


def run_pyod(
    machine: Machine, gap: int, *, seed: int = 0, pyod_args: dict[str, Any] | None = None
) -> tuple[Outcome, Outcome]:
    """PyOD AutoEncoder (defaults) on raw rows: (events joined with `gap`, events with gap 0)."""
    from pyod.models.auto_encoder import AutoEncoder

    x_train = machine.train[machine.features].to_numpy(np.float32)
    x_test = machine.test[machine.features].to_numpy(np.float32)
    with timed() as fit_t:
        model = AutoEncoder(**{"random_state": seed, "verbose": 0, **(pyod_args or {})}).fit(x_train)
    with timed() as score_t:
        scores = model.decision_function(x_test)
        flags = model.predict(x_test).astype(bool)  # its own contamination threshold
    out = []
    for g in (gap, 0):
        events = spans(find_events(flags, g))
        out.append(evaluate(machine.segments, events, machine.labels, scores, fit_t.seconds, score_t.seconds))
    return out[0], out[1]


QUIET_STD = 0.01  # of the [0, 1] range SMD is scaled to


def quiet_columns(train: pd.DataFrame, features: Sequence[str], tol: float = QUIET_STD) -> list[str]:
    """Columns that (almost) do not move in training: standard deviation <= `tol` (constant
    columns included)."""
    values = train[list(features)].to_numpy(np.float64)
    return [c for c, sd in zip(features, values.std(axis=0), strict=True) if sd <= tol]


def run_smd(
    data_dir: Path,
    *,
    quick: bool = False,
    detector_args: dict[str, Any] | None = None,
    show_progress: bool = True,
    seed: int = 0,
    machines: Sequence[str] | None = None,
    baseline: bool = True,
    pyod_args: dict[str, Any] | None = None,
) -> SuiteResult:
    """aemon (`Detector(modality="timeseries", **detector_args)`, defaults when None) and PyOD's
    AutoEncoder on SMD: event F1, TP/FP/FN, AUPRC, AUROC and seconds per machine and pooled.

    `quick`: machine-1-2 only, first 6,000 train and test rows. `machines`: a subset of
    `MACHINES`. `baseline=False` skips PyOD (to compare aemon variants quickly); `pyod_args`
    overrides PyOD's defaults (e.g. `{"epoch_num": 5}`), and is recorded.
    """
    from aemon.detector import Detector

    args = dict(SMD_DETECTOR if detector_args is None else detector_args)
    names = list(machines) if machines is not None else ([QUICK_MACHINE] if quick else list(MACHINES))
    max_rows = QUICK_ROWS if quick else None
    results: dict[str, dict[str, Outcome]] = {}
    info: dict[str, dict[str, Any]] = {}
    for name in progress(names, "SMD machines", show_progress):
        m = load_machine(data_dir, name, max_rows)
        log.info("SMD %s: train %s, test %s, %d segments", name, m.train.shape, m.test.shape, len(m.segments))
        with timed() as fit_t:
            det = Detector(modality="timeseries", seed=seed, progress=False, **args).fit(m.train)
        with timed() as score_t:
            res = det.score(m.test)
        gap = det.event_gap if det.event_gap is not None else det.window // 2
        events = spans(res.events)
        results[name] = {
            "aemon": evaluate(m.segments, events, m.labels, res.scores, fit_t.seconds, score_t.seconds)
        }
        if baseline:
            results[name]["PyOD AutoEncoder"], results[name]["PyOD AutoEncoder, gap 0"] = run_pyod(
                m, gap, seed=seed, pyod_args=pyod_args
            )
        info[name] = {
            "train_rows": len(m.train),
            "test_rows": len(m.test),
            "segments": m.segments,
            "anomalous_points": int(m.labels.sum()),
            "event_gap": gap,
            "columns": m.features,
            "aemon_events": events,
            **_quiet_share(m, res.column_errors, res.columns, events),
        }
    return summarize_smd(results, info, args, seed=seed, quick=quick, pyod_args=pyod_args)


def _quiet_share(
    m: Machine, column_errors: np.ndarray | None, columns: Sequence[str], events: Sequence[Interval]
) -> dict[str, Any]:
    """How much of aemon's (normalised) per-column error comes from columns that (almost) do
    not move in training: over the whole test series, inside the labelled incidents and
    inside aemon's false events; and the three columns with most error in its false events.
    A diagnostic, not a metric."""
    quiet = quiet_columns(m.train, m.features)
    out: dict[str, Any] = {
        "constant_columns": quiet_columns(m.train, m.features, 0.0),
        "quiet_columns": quiet,
    }
    if column_errors is None or not len(columns):
        return out
    errors = np.nan_to_num(np.abs(np.asarray(column_errors, dtype=np.float64)))
    is_quiet = np.isin(np.asarray(columns), quiet)

    def share(rows: np.ndarray) -> float | None:
        total = errors[rows].sum()
        return float(errors[rows][:, is_quiet].sum() / total) if len(rows) and total > 0 else None

    in_false = np.zeros(len(errors), dtype=bool)
    for a, b in events:
        if not any(a <= s[1] and s[0] <= b for s in m.segments):
            in_false[a : b + 1] = True
    out["quiet_error_share"] = {
        "test": share(np.arange(len(errors))),
        "incidents": share(np.flatnonzero(m.labels)),
        "false_events": share(np.flatnonzero(in_false)),
    }
    if in_false.any():
        top = np.argsort(errors[in_false].sum(axis=0))[::-1][:3]
        out["top_columns_in_false_events"] = [str(columns[i]) for i in top]
    return out


def summarize_smd(
    results: dict[str, dict[str, Outcome]],
    info: dict[str, dict[str, Any]],
    args: dict[str, Any],
    *,
    seed: int = 0,
    quick: bool = False,
    pyod_args: dict[str, Any] | None = None,
) -> SuiteResult:
    """Markdown table per machine and pooled, and the JSON record."""
    names = list(results)
    dets = [d for d in DETECTORS if all(d in results[n] for n in names)]
    pooled, mean, seconds, n_events = pool_outcomes(results, dets)
    det_text = f"`Detector(modality='timeseries'{''.join(f', {k}={v!r}' for k, v in args.items())})`"
    pyod_text = "defaults" + (f" except {pyod_args}" if pyod_args else "")
    scope = f"first {QUICK_ROWS:,} train and test rows (quick)" if quick else "full train and test files"
    lines = [
        "### SMD: real server metrics (event-level F1, no point adjustment)",
        "",
        f"Data: Server Machine Dataset (OmniAnomaly), {', '.join(names)}; 38 metrics at 1-min steps, "
        f"{scope}; each run of labelled test rows is one incident. Per machine: fit on train, score "
        f"test. **aemon**: {det_text}, seed {seed}, events at the detector's own threshold "
        "(calibrated on its held-out reference tail, no labels). **PyOD AutoEncoder** "
        f"({pyod_text}), same run: fitted on the raw train rows (38 features a point), "
        "`decision_function` for AUPRC/AUROC, its default `predict` (contamination 0.1) for flagged "
        "points, joined into events with aemon's event gap; *gap 0*: every run of flagged points "
        "is one event. Orion's overlap counts: an incident overlapped by an event is a TP, an event "
        "overlapping none a FP. Seconds: fit + score.",
        "",
        "| machine | detector | event F1 | TP/FP/FN | events | AUPRC | AUROC | seconds |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for n in names:
        for d in dets:
            o = results[n][d]
            c = o.counts
            lines.append(
                f"| {n} | {d} | {c.f1:.3f} | {c.tp}/{c.fp}/{c.fn} | {o.n_events} | {o.auprc:.3f} | "
                f"{o.auroc:.3f} | {o.fit_s + o.score_s:.1f} |"
            )
    for d in dets:
        c = pooled[d]
        lines.append(
            f"| **all** | {d} | **{c.f1:.3f}** | {c.tp}/{c.fp}/{c.fn} | {n_events[d]} | "
            f"{mean[d]['auprc']:.3f} (mean) | {mean[d]['auroc']:.3f} (mean) | {seconds[d]:.1f} |"
        )
    found = {d: f"{pooled[d].tp}/{pooled[d].tp + pooled[d].fn}" for d in dets}
    lines += [
        "",
        "Incidents found: "
        + ", ".join(f"{d} {v}" for d, v in found.items())
        + ". False events: "
        + ", ".join(f"{d} {pooled[d].fp}" for d in dets)
        + ".",
    ]
    shares = {n: info[n]["quiet_error_share"] for n in names if "quiet_error_share" in info[n]}
    if shares:
        lines += [
            "",
            f"Quiet columns (training standard deviation ≤ {QUIET_STD}, constant ones included) and "
            "their share of aemon's per-column error over the test series / inside labelled "
            "incidents / inside aemon's false events: "
            + "; ".join(
                f"{n}: {len(info[n]['quiet_columns'])} of {len(info[n]['columns'])} columns "
                f"({len(info[n]['constant_columns'])} constant), "
                + " / ".join(_pct(v[k]) for k in ("test", "incidents", "false_events"))
                + (
                    f", top columns in false events {', '.join(info[n]['top_columns_in_false_events'])}"
                    if "top_columns_in_false_events" in info[n]
                    else ""
                )
                for n, v in shares.items()
            )
            + ".",
        ]
    record = {
        "data": "SMD (NetManAIOps/OmniAnomaly@7fb0e0a ServerMachineDataset), "
        + ("quick: " if quick else "")
        + ", ".join(f"{n} train {info[n]['train_rows']} / test {info[n]['test_rows']} rows" for n in names),
        "protocol": "per machine: fit on train (synthetic 1-min timestamps from 2026-01-01), score test "
        "(timestamps continue); aemon events at the detector's own calibrated threshold; PyOD "
        "AutoEncoder (defaults) on raw rows, default predict (contamination 0.1) -> flagged points -> "
        "find_events with aemon's event gap (and gap 0); Orion overlap counts against runs of "
        "test_label, no point adjustment; AUPRC/AUROC of per-point scores",
        "detector": args,
        "pyod_args": pyod_args or {},
        "seed": seed,
        "quick": quick,
        "event_f1": {d: pooled[d].f1 for d in dets},
        "event_counts": {d: vars(pooled[d]) for d in dets},
        "mean": mean,
        "seconds": seconds,
        "n_events": n_events,
        "machines": {n: {"info": info[n], **{d: results[n][d].row() for d in dets}} for n in names},
    }
    plot = {
        d: ([results[n][d].counts.f1 for n in names], [results[n][d].auprc for n in names]) for d in dets[:2]
    }
    return SuiteResult("smd", "\n".join(lines), record, [lambda folder: plot_smd(names, plot, folder)])


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def plot_smd(names: list[str], values: dict[str, tuple[list[float], list[float]]], folder: Path) -> Path:
    """Event F1 and AUPRC per machine, aemon beside PyOD's AutoEncoder."""
    from aemon.benchmarks.report import grouped_bars

    series = {
        f"{d} {what}": vals[i] for d, vals in values.items() for i, what in enumerate(("event F1", "AUPRC"))
    }
    return grouped_bars(
        names, series, ylabel="", title="SMD: event F1 and AUPRC per machine", path=folder / "smd.png"
    )
