"""Realistic suite: unseen realistic series, aemon with no options against PyOD's AutoEncoder
with its defaults, on the same data in the same run.

Data: generated here, by a generator written apart from `aemon.synthetic` (data aemon's
authors did not design for), deterministic per data seed, as an ops engineer sees it:
- 3 univariate sets, `web-1..3`: web requests per 5 minutes; daily cycle with a morning and
  an evening peak, quieter and later weekends, day-to-day variation, slow trend and wander,
  AR(1) noise that grows with the level (Poisson-like plus multiplicative), integer counts,
  benign one- or two-point blips (in the reference too). 3 weeks of reference, 2 weeks scored
  with 10 incidents.
- 3 multivariate sets, `server-1..3`: 11 server metrics per minute driven by one shared load
  (request rate, CPU through an autoscaled replica count with a lag, latency as a convex
  function of utilisation with heavy-tailed noise, memory with a slow leak reset at deploys,
  network in/out with lags, disk IOPS smoothed with a nightly log-rotation burst, an integer
  connection count, error rate); two near-constant columns that step in normal operation
  (`replicas`, 4 -> 5 at the busiest hours; `worker_threads`, 200 <-> 256 at some deploys).
  2 weeks of reference, 1 week scored with 11 incidents.
- Incidents (test rows only, the reference holds none), from minutes to hours: spike, dip,
  level_shift (daytime), night_level_shift, flatline (a stuck value), variance_burst,
  missing_peak (a weekday's main peak absent), ramp (slow drift, then back), zero (a column or
  the whole signal at 0), decoupling (multivariate: a column follows the load of another time
  of day). Each is labelled as an inclusive window of test rows, with its kind and column.
- Quick: `web-1` (2 weeks reference, 1 week scored, 9 incidents) and `server-1` (4 days of
  reference, 3 days scored, 8 incidents).

Protocol, per set:
- aemon: `Detector(seed=seed, progress=False)`, no other option (what `aemon train` and
  `aemon score` run), `.fit(reference)`, `.score(test)`. Events: `ScoreResult.events`
  (start_index, end_index), at the detector's own threshold; point scores `ScoreResult.scores`.
- PyOD: as `aemon.benchmarks.smd.run_pyod`, on rows (no windows): every row of values,
  standardized by the reference mean and standard deviation (1 for a constant column), is one
  point; `pyod.models.auto_encoder.AutoEncoder(random_state=seed, verbose=0)`, otherwise its
  defaults, fitted on the reference rows; `decision_function(test)` for the rankings; its
  default `predict` (contamination 0.1) flags points, joined into events by `find_events` with
  aemon's event gap. Same process, same data, after aemon. And the same on the flattened
  windows of aemon's window length (*windows*; each row scored by the window it ends).
- Orion's overlap counts (`overlap_counts`, no point adjustment): an incident overlapped by an
  event is a TP, an incident overlapped by none a FN, an event overlapping no incident a FP.
  False events per week of normal scored time (test rows outside incidents). AUPRC and AUROC
  of the point scores (sklearn) per set, their mean over sets. Recall by incident kind, pooled.

`save_sets(folder)` writes the data as CSVs (`<set>/reference.csv`, `test.csv`,
`incidents.json`) for the CLI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aemon.benchmarks.common import SuiteResult, progress, timed
from aemon.benchmarks.nab_metrics import Interval
from aemon.benchmarks.smd import Outcome, evaluate, pool_outcomes, spans
from aemon.calibration import find_events
from aemon.config import HOLDOUT_FRACTION
from aemon.data.timeseries import sliding_windows
from aemon.errors import ConfigError

log = logging.getLogger(__name__)

REALISTIC_DETECTOR: dict[str, Any] = {}  # aemon with no options
# "as aemon train fits it": the same Detector() on the reference less `aemon train`'s holdout,
# the path a user's `aemon train` / `aemon score` takes.
TRAIN_PATH = "aemon, as aemon train fits it"
DETECTORS = ("aemon", TRAIN_PATH, "PyOD AutoEncoder", "PyOD AutoEncoder, windows")
WEEK_MIN = 7 * 24 * 60
UNIVARIATE_KINDS = (
    "missing_peak",
    "night_level_shift",
    "level_shift",
    "ramp",
    "spike",
    "dip",
    "flatline",
    "variance_burst",
    "zero",
)
MULTIVARIATE_KINDS = (*UNIVARIATE_KINDS, "decoupling")
QUICK_MULTIVARIATE_KINDS = (
    "missing_peak",
    "night_level_shift",
    "level_shift",
    "spike",
    "dip",
    "flatline",
    "decoupling",
    "zero",
)
EXTRA_KINDS = ("spike", "level_shift", "flatline", "dip")  # one more of these per full set
# Incident length in minutes (min, max), and the hours of day it may start in (None: any).
DURATIONS: dict[str, tuple[int, int]] = {
    "spike": (3, 15),
    "dip": (10, 30),
    "level_shift": (60, 180),
    "night_level_shift": (90, 240),
    "flatline": (30, 180),
    "variance_burst": (30, 120),
    "missing_peak": (240, 300),
    "ramp": (90, 240),
    "zero": (5, 60),
    "decoupling": (60, 180),
}
START_HOURS: dict[str, tuple[float, float]] = {
    "dip": (7, 22),
    "level_shift": (8, 17),
    "night_level_shift": (0, 3),
    "ramp": (6, 16),
    "decoupling": (7, 20),
}
SERVER_COLUMNS = (
    "requests_per_s",
    "cpu_pct",
    "latency_p95_ms",
    "memory_pct",
    "net_in_mbps",
    "net_out_mbps",
    "disk_iops",
    "active_connections",
    "replicas",
    "worker_threads",
    "error_rate_pct",
)


@dataclass(frozen=True)
class Incident:
    kind: str
    start: int  # test row, inclusive
    end: int  # test row, inclusive
    column: str | None  # the column it touches; None: the load (every load-driven column)


@dataclass
class RealisticSet:
    name: str
    reference: pd.DataFrame  # timestamp + float columns, no incidents
    test: pd.DataFrame
    incidents: list[Incident]
    step_minutes: int

    @property
    def features(self) -> list[str]:
        return [c for c in self.reference.columns if c != "timestamp"]

    @property
    def windows(self) -> list[Interval]:
        return [(i.start, i.end) for i in self.incidents]

    @property
    def labels(self) -> np.ndarray:
        out = np.zeros(len(self.test), dtype=bool)
        for i in self.incidents:
            out[i.start : i.end + 1] = True
        return out

    @property
    def normal_weeks(self) -> float:
        return float((~self.labels).sum()) * self.step_minutes / WEEK_MIN


# --- the generator ------------------------------------------------------------------------


def _bump(hour: np.ndarray, center: float, width: float) -> np.ndarray:
    d = (hour - center + 12.0) % 24.0 - 12.0  # on the 24-hour clock
    return np.asarray(np.exp(-0.5 * (d / width) ** 2))


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    """Unit-variance AR(1) noise."""
    from scipy.signal import lfilter

    z = rng.standard_normal(n) * np.sqrt(1 - phi**2)
    z[0] = rng.standard_normal()
    return np.asarray(lfilter([1.0], [1.0, -phi], z))


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([np.repeat(x[:1], k), x[: len(x) - k]]) if k > 0 else x.copy()


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    return np.asarray(pd.Series(x).ewm(span=span).mean().to_numpy())


@dataclass(frozen=True)
class _Clock:
    minutes: np.ndarray  # since the start (a Monday, 00:00)
    start: pd.Timestamp
    step: int  # minutes

    @property
    def hour(self) -> np.ndarray:
        return np.asarray((self.minutes / 60.0) % 24.0)

    @property
    def weekday(self) -> np.ndarray:
        return np.asarray((self.minutes // 1440 + self.start.dayofweek) % 7)

    def stamps(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=len(self.minutes), freq=f"{self.step}min")


def _load(rng: np.random.Generator, clock: _Clock) -> tuple[np.ndarray, float]:
    """A traffic shape (mean about 1) and the hour of its main weekday peak."""
    main = rng.uniform(10.0, 12.5)
    evening = rng.uniform(19.0, 21.5)
    heights = (1.0, rng.uniform(0.45, 0.9), rng.uniform(0.2, 0.4))
    widths = (rng.uniform(1.8, 2.8), rng.uniform(1.5, 2.5), rng.uniform(3.0, 4.5))
    centers = (main, evening, rng.uniform(14.5, 16.0))
    floor = rng.uniform(0.12, 0.3)

    def shape(hour: np.ndarray) -> np.ndarray:
        out = np.full(hour.shape, floor)
        for h, c, w in zip(heights, centers, widths, strict=True):
            out += h * _bump(hour, c, w)
        return out

    hour, days = clock.hour, clock.minutes / 1440.0
    weekend = (clock.weekday >= 5).astype(float)
    k = max(1, int(360 / clock.step))  # blend weekday and weekend over 6 hours around midnight
    w = np.convolve(np.pad(weekend, (k // 2, k - k // 2 - 1), mode="edge"), np.ones(k) / k, mode="valid")
    x = (1 - w) * shape(hour) + w * rng.uniform(0.55, 0.8) * shape(hour - rng.uniform(1.0, 2.0))
    daily = np.exp(rng.normal(0, 0.06, int(days.max()) + 2))
    x *= np.interp(days, np.arange(len(daily)) + 0.5, daily)
    x *= 1 + rng.uniform(0.005, 0.03) * days / 7  # growth per week
    for period in rng.uniform(3, 10, 2):  # slow wander
        x *= 1 + rng.uniform(0.01, 0.04) * np.sin(2 * np.pi * days / period + rng.uniform(0, 2 * np.pi))
    return x / x[: int(WEEK_MIN / clock.step)].mean(), main


def _place(
    rng: np.random.Generator, kinds: Sequence[str], clock: _Clock, n_ref: int, peak_hour: float
) -> list[Incident]:
    """Non-overlapping incident windows in the test rows (at least 2 hours apart, 2 hours
    from either end), in whole-series rows, the most constrained kinds first."""
    n = len(clock.minutes)
    gap = 120 // clock.step
    taken: list[Interval] = []
    out: list[Incident] = []
    hour, weekday = clock.hour, clock.weekday
    for kind in kinds:
        lo, hi = DURATIONS[kind]
        hours = START_HOURS.get(kind)
        if kind == "missing_peak":
            hours = (peak_hour - 2.6, peak_hour - 2.0)
        for _ in range(5_000):
            length = max(1, int(rng.integers(lo, hi + 1)) // clock.step)
            start = int(rng.integers(n_ref + gap, n - gap - length))
            end = start + length - 1
            if hours is not None and not hours[0] <= hour[start] < hours[1]:
                continue
            if kind == "missing_peak" and weekday[start] >= 5:
                continue
            if any(start - gap <= b and a <= end + gap for a, b in taken):
                continue
            taken.append((start, end))
            out.append(Incident(kind, start, end, None))
            break
        else:
            raise ConfigError(f"could not place a {kind} incident")
    return out


def _blips(rng: np.random.Generator, n: int, per_day: float, step: int) -> np.ndarray:
    """Benign short bursts (normal operation): a multiplier per row."""
    out = np.ones(n)
    count = rng.poisson(per_day * n * step / 1440)
    for start in rng.integers(0, n - 3, count):
        out[start : start + int(rng.integers(1, 3))] *= rng.uniform(1.15, 1.5)
    return out


def _split(name: str, frame: pd.DataFrame, n_ref: int, incidents: list[Incident], step: int) -> RealisticSet:
    shifted = [Incident(i.kind, i.start - n_ref, i.end - n_ref, i.column) for i in incidents]
    shifted.sort(key=lambda i: i.start)
    test = frame.iloc[n_ref:].reset_index(drop=True)
    return RealisticSet(name, frame.iloc[:n_ref].reset_index(drop=True), test, shifted, step)


def _ramp(rng: np.random.Generator, length: int, top: tuple[float, float]) -> np.ndarray:
    return np.linspace(0, rng.uniform(*top), length)


def make_web(
    rng: np.random.Generator, name: str, ref_weeks: int, test_weeks: int, kinds: Sequence[str]
) -> RealisticSet:
    """Web requests per 5 minutes: reference weeks, then test weeks holding `kinds` incidents."""
    step = 5
    n_ref, n = ref_weeks * WEEK_MIN // step, (ref_weeks + test_weeks) * WEEK_MIN // step
    clock = _Clock(
        np.arange(n) * step, pd.Timestamp("2026-02-02") + pd.Timedelta(weeks=int(rng.integers(0, 20))), step
    )
    shape, peak = _load(rng, clock)
    level = rng.uniform(300, 3000) * shape
    eps = _ar1(rng, n, rng.uniform(0.3, 0.7))
    c1, c2 = rng.uniform(0.8, 1.3), rng.uniform(0.03, 0.06)
    incidents = _place(rng, kinds, clock, n_ref, peak)
    for inc in incidents:
        w = slice(inc.start, inc.end + 1)
        length = inc.end - inc.start + 1
        if inc.kind == "level_shift":
            level[w] *= rng.uniform(1.3, 1.6) if rng.random() < 0.5 else rng.uniform(0.6, 0.75)
        elif inc.kind == "night_level_shift":
            level[w] *= rng.uniform(1.5, 2.0)
        elif inc.kind == "dip":
            level[w] *= rng.uniform(0.25, 0.55)
        elif inc.kind == "ramp":
            level[w] *= 1 + _ramp(rng, length, (0.4, 0.8))
        elif inc.kind == "missing_peak":
            level[w] = np.minimum(level[w], np.linspace(level[inc.start], level[inc.end], length))
        elif inc.kind == "variance_burst":
            eps[w] *= rng.uniform(4.0, 6.0)
    value = (level + (c1 * np.sqrt(level) + c2 * level) * eps) * _blips(rng, n, 1.5, step)
    for inc in incidents:
        w = slice(inc.start, inc.end + 1)
        if inc.kind == "spike":
            value[w] *= rng.uniform(1.8, 3.5)
        elif inc.kind == "flatline":
            value[w] = value[inc.start - 1]
        elif inc.kind == "zero":
            value[w] = 0.0
    frame = pd.DataFrame({"timestamp": clock.stamps(), "requests": np.maximum(value, 0).round()})
    return _split(name, frame, n_ref, incidents, step)


# Multivariate: incidents on the load (every load-driven column follows), and on one column.
def _load_incident(rng: np.random.Generator, load: np.ndarray, inc: Incident) -> None:
    w = slice(inc.start, inc.end + 1)
    if inc.kind == "dip":
        load[w] *= rng.uniform(0.3, 0.6)
    elif inc.kind == "missing_peak":
        load[w] = np.minimum(load[w], np.linspace(load[inc.start], load[inc.end], inc.end - inc.start + 1))


@dataclass
class _Server:
    load: np.ndarray
    util: np.ndarray  # per replica, lagged
    cols: dict[str, np.ndarray]


def _server_metrics(rng: np.random.Generator, load: np.ndarray, clock: _Clock) -> _Server:
    n = len(load)
    hourly = pd.Series(load).rolling(60, min_periods=1).mean().to_numpy()
    busy = np.quantile(hourly, rng.uniform(0.88, 0.95))
    replicas = np.where(hourly > busy, 5.0, 4.0)
    daytime = np.flatnonzero((clock.hour > 10) & (clock.hour < 16))
    first = rng.choice(daytime[daytime < 0.4 * n])  # the reference shows both pool sizes
    deploys = np.sort(np.append(rng.choice(daytime, n // 2880, replace=False), first))
    pool = np.full(n, 200.0)
    since = clock.minutes / 60.0
    toggles = (rng.random(len(deploys)) < 0.5) | (deploys == first)
    for d, toggle in zip(deploys, toggles, strict=True):
        if toggle:
            pool[d:] = 456.0 - pool[d]
        since[d:] = (clock.minutes[d:] - clock.minutes[d]) / 60.0
    u = _lag(load, 2) * 4 / replicas
    u = u * rng.uniform(0.8, 0.9) / np.quantile(u, 0.99)
    jitter = np.where(rng.random(n) < 0.02, rng.choice([-1.0, 1.0], n), 0.0)
    log_rotate = ((clock.minutes % 1440) < 5).astype(float)
    cols = {
        "requests_per_s": 150 * load * (1 + 0.04 * rng.standard_normal(n)),
        "cpu_pct": np.clip(4 + 85 * u + 1.5 * rng.standard_normal(n), 0, 100),
        "latency_p95_ms": (35 + 20 * np.exp(4 * (u - 0.75))) * np.exp(0.07 * _ar1(rng, n, 0.4)),
        "memory_pct": 40 + 8 * _ema(u, 30) + 0.08 * since + 0.25 * rng.standard_normal(n),
        "net_in_mbps": 6 * load * (1 + 0.03 * rng.standard_normal(n)),
        "net_out_mbps": 30 * _lag(load, 1) * (1 + 0.05 * rng.standard_normal(n)),
        "disk_iops": 250 * _ema(load, 10) + 400 * log_rotate + 40 * rng.standard_normal(n),
        "active_connections": rng.poisson(200 * np.maximum(load, 0)).astype(float),
        "replicas": replicas,
        "worker_threads": pool + jitter,
        "error_rate_pct": 0.05 + 0.5 * np.maximum(u - 0.8, 0) + np.abs(0.015 * rng.standard_normal(n)),
    }
    return _Server(load, u, cols)


def _column_incident(rng: np.random.Generator, s: _Server, inc: Incident) -> Incident:
    """Apply one column incident to `s.cols` in place; the incident with its column."""
    w = slice(inc.start, inc.end + 1)
    length = inc.end - inc.start + 1
    cols = s.cols

    def pick(names: Sequence[str]) -> str:
        return str(rng.choice(list(names)))

    col = "cpu_pct"
    if inc.kind == "spike":
        col = pick(("latency_p95_ms", "cpu_pct", "error_rate_pct"))
        bump = {
            "latency_p95_ms": rng.uniform(1.5, 4.0),
            "cpu_pct": rng.uniform(30, 50),
            "error_rate_pct": rng.uniform(1, 3),
        }
        cols[col][w] = cols[col][w] * (1 + bump[col]) if col == "latency_p95_ms" else cols[col][w] + bump[col]
    elif inc.kind == "level_shift":
        col = pick(("latency_p95_ms", "error_rate_pct", "memory_pct"))
        factor = {"latency_p95_ms": rng.uniform(1.4, 1.9), "error_rate_pct": rng.uniform(4, 8)}
        cols[col][w] = cols[col][w] * factor[col] if col in factor else cols[col][w] + rng.uniform(8, 12)
    elif inc.kind == "night_level_shift":
        cols[col][w] += rng.uniform(12, 25)  # a runaway batch job
    elif inc.kind == "flatline":
        col = pick(("requests_per_s", "net_in_mbps", "cpu_pct", "active_connections"))
        cols[col][w] = cols[col][inc.start - 1]
    elif inc.kind == "variance_burst":
        col = pick(("latency_p95_ms", "net_out_mbps"))
        cols[col][w] *= np.exp(rng.uniform(0.25, 0.4) * rng.standard_normal(length))
    elif inc.kind == "ramp":
        col = "memory_pct"  # a leak, then a restart
        cols[col][w] += _ramp(rng, length, (15, 30))
    elif inc.kind == "decoupling":
        col = pick(("cpu_pct", "net_out_mbps"))
        shift = int(rng.integers(8 * 60, 14 * 60))
        idx = np.arange(inc.start, inc.end + 1) - shift
        other = {"cpu_pct": 4 + 85 * s.util[idx], "net_out_mbps": 30 * s.load[idx]}[col]
        cols[col][w] = other * (1 + 0.03 * rng.standard_normal(length))
    elif inc.kind == "zero":
        col = pick(("net_out_mbps", "active_connections", "requests_per_s", "disk_iops"))
        cols[col][w] = 0.0
    else:
        return inc
    cols[col] = np.clip(cols[col], 0, 100) if col == "cpu_pct" else cols[col]
    return Incident(inc.kind, inc.start, inc.end, col)


def make_server(
    rng: np.random.Generator, name: str, ref_days: int, test_days: int, kinds: Sequence[str]
) -> RealisticSet:
    """11 server metrics per minute: reference days, then test days holding `kinds` incidents."""
    step = 1
    n_ref, n = ref_days * 1440, (ref_days + test_days) * 1440
    clock = _Clock(
        np.arange(n, dtype=np.float64),
        pd.Timestamp("2026-03-02") + pd.Timedelta(weeks=int(rng.integers(0, 20))),
        step,
    )
    shape, peak = _load(rng, clock)
    load = shape * (1 + 0.02 * _ar1(rng, n, 0.8)) * _blips(rng, n, 2.0, step)
    incidents = _place(rng, kinds, clock, n_ref, peak)
    for inc in incidents:
        _load_incident(rng, load, inc)
    server = _server_metrics(rng, load, clock)
    incidents = [_column_incident(rng, server, inc) for inc in incidents]
    frame = pd.DataFrame({"timestamp": clock.stamps(), **{c: server.cols[c] for c in SERVER_COLUMNS}})
    return _split(name, frame, n_ref, incidents, step)


def make_sets(*, quick: bool = False, data_seed: int = 0) -> list[RealisticSet]:
    """The suite's data sets, deterministic per `data_seed` (set i draws from seed [data_seed, i])."""
    sets: list[RealisticSet] = []
    n = 1 if quick else 3
    for i in range(n):
        rng = np.random.default_rng([data_seed, i])
        kinds: tuple[str, ...] = (
            UNIVARIATE_KINDS if quick else (*UNIVARIATE_KINDS, str(rng.choice(EXTRA_KINDS)))
        )
        sets.append(make_web(rng, f"web-{i + 1}", 2 if quick else 3, 1 if quick else 2, kinds))
    for i in range(n):
        rng = np.random.default_rng([data_seed, 100 + i])
        kinds = QUICK_MULTIVARIATE_KINDS if quick else (*MULTIVARIATE_KINDS, str(rng.choice(EXTRA_KINDS)))
        sets.append(make_server(rng, f"server-{i + 1}", 4 if quick else 14, 3 if quick else 7, kinds))
    return sets


def save_sets(folder: Path | str, *, quick: bool = False, data_seed: int = 0) -> list[Path]:
    """Write every set as `<folder>/<set>/reference.csv`, `test.csv` and `incidents.json`."""
    out = []
    for s in make_sets(quick=quick, data_seed=data_seed):
        path = Path(folder) / s.name
        path.mkdir(parents=True, exist_ok=True)
        s.reference.to_csv(path / "reference.csv", index=False)
        s.test.to_csv(path / "test.csv", index=False)
        stamps = s.test["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S")
        meta = {
            "set": s.name,
            "step_minutes": s.step_minutes,
            "windows": "start/end: inclusive row indices of test.csv (0 = its first data row)",
            "incidents": [
                {**asdict(i), "start_time": stamps.iloc[i.start], "end_time": stamps.iloc[i.end]}
                for i in s.incidents
            ],
        }
        (path / "incidents.json").write_text(json.dumps(meta, indent=1))
        out.append(path)
    return out


# --- the benchmark ------------------------------------------------------------------------


def run_pyod_rows(
    s: RealisticSet, gap: int, *, seed: int = 0, window: int = 1
) -> tuple[Outcome, list[Interval]]:
    """PyOD AutoEncoder (defaults) on rows standardized by the reference, or with `window` > 1
    on the flattened windows of `window` rows (each row scored by the window it ends; the
    first rows by the first window): its outcome and events."""
    from pyod.models.auto_encoder import AutoEncoder

    ref = s.reference[s.features].to_numpy(np.float64)
    mean, std = ref.mean(axis=0), ref.std(axis=0)
    std[std <= 0] = 1.0
    x_ref = ((ref - mean) / std).astype(np.float32)
    x_test = ((s.test[s.features].to_numpy(np.float64) - mean) / std).astype(np.float32)
    if window > 1:
        x_ref, x_test = (sliding_windows(x, window).reshape(len(x) - window + 1, -1) for x in (x_ref, x_test))
    with timed() as fit_t:
        model = AutoEncoder(random_state=seed, verbose=0).fit(x_ref)
    with timed() as score_t:
        scores = model.decision_function(x_test)
        flags = model.predict(x_test).astype(bool)
    if window > 1:  # back to one value a row
        scores = np.r_[np.full(window - 1, scores[0]), scores]
        flags = np.r_[np.full(window - 1, flags[0]), flags]
    events = spans(find_events(flags, gap))
    return evaluate(s.windows, events, s.labels, scores, fit_t.seconds, score_t.seconds), events


def run_realistic(
    *,
    quick: bool = False,
    seed: int = 0,
    data_seed: int = 0,
    detector_args: dict[str, Any] | None = None,
    show_progress: bool = True,
    baseline: bool = True,
) -> SuiteResult:
    """aemon (no options unless `detector_args`) and PyOD's AutoEncoder (defaults) on the
    generated realistic sets: event F1, TP/FP/FN, false events per week, AUPRC, AUROC per set
    and pooled, and recall by incident kind. aemon is fitted twice: on the whole reference, and as
    `aemon train` fits it (its last HOLDOUT_FRACTION held out), a row of its own."""
    from aemon.detector import Detector

    args = dict(REALISTIC_DETECTOR if detector_args is None else detector_args)
    results: dict[str, dict[str, Outcome]] = {}
    info: dict[str, dict[str, Any]] = {}
    hits: dict[str, dict[str, list[bool]]] = {d: {} for d in DETECTORS}
    sets = make_sets(quick=quick, data_seed=data_seed)
    for s in progress(sets, "realistic sets", show_progress):
        with timed() as fit_t:
            det = Detector(seed=seed, progress=False, **args).fit(s.reference)
        with timed() as score_t:
            res = det.score(s.test)
        if res.events is None:
            raise ConfigError("the realistic benchmark needs a time-series detector (events)")
        gap = det.event_gap if det.event_gap is not None else det.window // 2
        events = {"aemon": spans(res.events)}
        results[s.name] = {
            "aemon": evaluate(
                s.windows, events["aemon"], s.labels, res.scores, fit_t.seconds, score_t.seconds
            )
        }
        n_fit = len(s.reference) - int(len(s.reference) * HOLDOUT_FRACTION)  # split_holdout's cut
        with timed() as fit_t:
            cut = Detector(seed=seed, progress=False, **args).fit(s.reference.iloc[:n_fit])
        with timed() as score_t:
            cut_res = cut.score(s.test)
        events[TRAIN_PATH] = spans(cut_res.events)
        results[s.name][TRAIN_PATH] = evaluate(
            s.windows, events[TRAIN_PATH], s.labels, cut_res.scores, fit_t.seconds, score_t.seconds
        )
        if baseline:
            for d, rows in (("PyOD AutoEncoder", 1), ("PyOD AutoEncoder, windows", det.window)):
                results[s.name][d], events[d] = run_pyod_rows(s, gap, seed=seed, window=rows)
        for d, evs in events.items():
            for inc in s.incidents:
                found = any(a <= inc.end and inc.start <= b for a, b in evs)
                hits[d].setdefault(inc.kind, []).append(found)
        info[s.name] = {
            "reference_rows": len(s.reference),
            "test_rows": len(s.test),
            "columns": s.features,
            "step_minutes": s.step_minutes,
            "normal_weeks": s.normal_weeks,
            "event_gap": gap,
            "threshold": float(det.threshold_),
            "incidents": [asdict(i) for i in s.incidents],
            "events": events,
        }
        log.info("realistic %s: aemon %s", s.name, vars(results[s.name]["aemon"].counts))
    return summarize(results, info, hits, args, seed=seed, data_seed=data_seed, quick=quick)


def _per_week(o: Outcome, weeks: float) -> float:
    return o.counts.fp / weeks if weeks else 0.0


def summarize(
    results: dict[str, dict[str, Outcome]],
    info: dict[str, dict[str, Any]],
    hits: dict[str, dict[str, list[bool]]],
    args: dict[str, Any],
    *,
    seed: int,
    data_seed: int,
    quick: bool,
) -> SuiteResult:
    """Markdown tables (per set and pooled; recall by kind) and the JSON record."""
    names = list(results)
    dets = [d for d in DETECTORS if all(d in results[n] for n in names)]
    weeks = sum(info[n]["normal_weeks"] for n in names)
    pooled, mean, seconds, n_events = pool_outcomes(results, dets)
    kinds = sorted({k for d in dets for k in hits[d]}, key=lambda k: MULTIVARIATE_KINDS.index(k))
    recall = {d: {k: float(np.mean(hits[d][k])) for k in kinds} for d in dets}
    counts_by_kind = {k: len(hits[dets[0]][k]) for k in kinds}
    det_text = f"`Detector({', '.join(f'{k}={v!r}' for k, v in args.items())})`"
    sizes = "; ".join(
        f"{n}: {len(info[n]['columns'])} column(s) at {info[n]['step_minutes']}-min steps, "
        f"{info[n]['reference_rows']:,} reference / {info[n]['test_rows']:,} test rows, "
        f"{len(info[n]['incidents'])} incidents"
        for n in names
    )
    lines = [
        "### Realistic: unseen realistic series (event-level F1, no point adjustment)",
        "",
        "Data: generated by `aemon.benchmarks.realistic` (written apart from `aemon.synthetic`; "
        f"data seed {data_seed}): web requests per 5 min (`web-*`: daily and weekly cycles, trend, "
        "noise growing with the level, benign blips) and 11 server metrics per minute (`server-*`: "
        "one shared load with lags and nonlinear links, an integer counter, two near-constant "
        "columns that step in normal operation); the reference holds no incidents; the scored "
        f"part holds labelled incidents of varied kinds. {sizes}. **aemon**: {det_text} (no "
        f"options, as `aemon train` / `aemon score`), seed {seed}, events at its own threshold, "
        f"fitted on the whole reference; *{TRAIN_PATH}*: fitted on the reference less its last "
        f"{HOLDOUT_FRACTION:.0%}, which `aemon train` holds out for its quality gate. "
        "**PyOD AutoEncoder** (defaults, `random_state`, `verbose=0`), run in the same process on "
        "the same data: fitted on the reference rows standardized by the reference mean and "
        "standard deviation, one point a row (no windows, as in the SMD suite) and, *windows*, on "
        "the flattened windows of aemon's window length (each row scored by the window it ends); "
        "its default `predict` (contamination 0.1) flags points, joined into events with aemon's "
        "event gap. "
        "Orion's overlap counts: an incident overlapped by an event is a TP, an event overlapping "
        "none a FP. False events per week of normal scored time. AUPRC/AUROC per point; the "
        "pooled row sums the counts and averages AUPRC/AUROC over sets. Seconds: fit + score.",
        "",
        "| set | detector | event F1 | TP/FP/FN | events | false events / week | AUPRC | AUROC | seconds |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        for d in dets:
            o, c = results[n][d], results[n][d].counts
            lines.append(
                f"| {n} | {d} | {c.f1:.3f} | {c.tp}/{c.fp}/{c.fn} | {o.n_events} | "
                f"{_per_week(o, info[n]['normal_weeks']):.1f} | {o.auprc:.3f} | {o.auroc:.3f} | "
                f"{o.fit_s + o.score_s:.1f} |"
            )
    for d in dets:
        c = pooled[d]
        lines.append(
            f"| **all** | {d} | **{c.f1:.3f}** | {c.tp}/{c.fp}/{c.fn} | {n_events[d]} | "
            f"{c.fp / weeks:.1f} | {mean[d]['auprc']:.3f} (mean) | {mean[d]['auroc']:.3f} (mean) | "
            f"{seconds[d]:.1f} |"
        )
    lines += [
        "",
        "Incidents detected, by kind (pooled over sets):",
        "",
        "| kind | incidents | " + " | ".join(dets) + " |",
        "|---|---:|" + "---:|" * len(dets),
    ]
    for k in kinds:
        found = " | ".join(f"{sum(hits[d][k])}/{counts_by_kind[k]}" for d in dets)
        lines.append(f"| {k} | {counts_by_kind[k]} | {found} |")
    record = {
        "data": "aemon.benchmarks.realistic.make_sets"
        + (" (quick)" if quick else "")
        + f", data seed {data_seed}: {sizes}",
        "protocol": "per set: aemon Detector() with no options (seed) fit on the reference, score the "
        "test part, events at its own threshold; the same fit on the reference less its last "
        f"{HOLDOUT_FRACTION:.0%} (as aemon train fits it); PyOD AutoEncoder (defaults, same process) on rows "
        "standardized by the reference, and on their flattened windows of aemon's length, default "
        "predict (contamination 0.1) -> find_events with "
        "aemon's event gap; Orion overlap counts against the labelled incident windows, no point "
        "adjustment, pooled over sets; false events per week of normal scored time; AUPRC/AUROC of "
        "per-point scores, mean over sets; recall by incident kind pooled over sets",
        "detector": args,
        "pyod_args": {"random_state": seed, "verbose": 0},
        "seed": seed,
        "data_seed": data_seed,
        "quick": quick,
        "event_f1": {d: pooled[d].f1 for d in dets},
        "event_counts": {d: vars(pooled[d]) for d in dets},
        "false_events_per_week": {d: pooled[d].fp / weeks for d in dets},
        "normal_weeks": weeks,
        "mean": mean,
        "seconds": seconds,
        "n_events": n_events,
        "incidents_by_kind": counts_by_kind,
        "recall_by_kind": recall,
        "sets": {n: {"info": info[n], **{d: results[n][d].row() for d in dets}} for n in names},
    }
    return SuiteResult("realistic", "\n".join(lines), record, [lambda folder: plot_realistic(recall, folder)])


def plot_realistic(recall: dict[str, dict[str, float]], folder: Path) -> Path:
    """Share of incidents detected by kind, aemon beside PyOD's AutoEncoder."""
    from aemon.benchmarks.report import new_figure

    kinds = list(next(iter(recall.values())))
    fig, ax = new_figure(8, 3.6)
    width = 0.8 / max(len(recall), 1)
    x = np.arange(len(kinds))
    for i, (label, r) in enumerate(recall.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [r[k] for k in kinds], width, label=label)
    ax.set_xticks(x, [k.replace("_", " ") for k in kinds], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("incidents detected")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.set_title("Realistic series: detection rate by incident kind")
    path = folder / "realistic_recall.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
