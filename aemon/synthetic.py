"""Generated data with known anomalies, for the quickstart, tests and benchmarks.

`make_series` draws a seasonal multivariate series (daily and weekly cycles, correlated
columns, noise) and injects incidents of several kinds; `make_images` draws simple shapes and
adds defects (scratches and blobs). Both return the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aemon.errors import ConfigError

INCIDENT_KINDS = ("spike", "level_shift", "pattern_change", "flatline", "decoupling")


@dataclass
class Incident:
    kind: str
    start: int  # first row (inclusive)
    end: int  # last row (inclusive)
    columns: tuple[str, ...]


def make_series(
    n: int = 5_000,
    n_columns: int = 3,
    *,
    freq: str = "5min",
    start: str = "2026-01-01",
    incidents: tuple[str, ...] = (),
    noise: float = 0.1,
    seed: int = 0,
    period: int = 288,
    flat_columns: int = 0,
    creeping_columns: int = 0,
) -> tuple[pd.DataFrame, np.ndarray, list[Incident]]:
    """A normal seasonal series, with `incidents` (kinds from INCIDENT_KINDS) injected at
    evenly spread positions in its second half. Returns (frame, point labels, incidents).

    `flat_columns` adds near-constant columns `flat_<i>` as server metrics have them (a
    configured limit, a count of processes): an integer level that steps by one a few times,
    never part of an incident. `creeping_columns` adds columns `creep_<i>` that climb steadily
    (disk used, a slow leak: 0.8 per day since 2026-01-01, so a later series goes on from a
    level its reference never reached), with a small daily wiggle."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = np.sin(2 * np.pi * t / period)
    # The weekly cycle keeps to the calendar (steps since 2026-01-01), as a real one does, so
    # series that start on different days share their weekdays' shape.
    since = (pd.Timestamp(start) - pd.Timestamp("2026-01-01")) // pd.Timedelta(freq)
    weekly = 0.3 * np.sin(2 * np.pi * (t + since) / (period * 7))
    cols = [f"metric_{i}" for i in range(n_columns)]
    data = {}
    for i, c in enumerate(cols):
        phase = 2 * np.pi * i / max(n_columns, 1) / 4
        shaped = np.sin(2 * np.pi * t / period + phase) + 0.25 * np.sin(4 * np.pi * t / period)
        data[c] = (1 + i) * (shaped + weekly) + 0.5 * base * (i % 2) + noise * rng.standard_normal(n)
    values = np.stack([data[c] for c in cols], axis=1)
    labels = np.zeros(n, dtype=bool)
    found: list[Incident] = []
    if incidents:
        slots = np.linspace(n // 2, n - period // 2, len(incidents) + 1).astype(int)[:-1]
        for kind, at in zip(incidents, slots, strict=True):
            j = len(found) % n_columns
            length = {
                "spike": 3,
                "level_shift": period // 6,
                "pattern_change": period // 3,
                "flatline": period // 4,
                "decoupling": period // 3,
            }[kind]
            end = min(at + length - 1, n - 1)
            seg = slice(at, end + 1)
            scale = values[:, j].std()
            if kind == "spike":
                values[seg, j] += 6 * scale
            elif kind == "level_shift":
                values[seg, j] += 2.5 * scale
            elif kind == "pattern_change":  # frequency triples
                values[seg, j] = scale * 1.4 * np.sin(6 * np.pi * t[seg] / period)
            elif kind == "flatline":
                values[seg, j] = values[at, j]
            elif kind == "decoupling":  # the column moves against its usual shape
                values[seg, j] = -values[seg, j]
            else:
                raise ConfigError(f"incident kind must be one of {INCIDENT_KINDS}, got {kind!r}")
            labels[seg] = True
            found.append(Incident(kind, int(at), int(end), (cols[j],)))
    stamps = pd.date_range(start, periods=n, freq=freq)
    frame = pd.DataFrame({"timestamp": stamps, **{c: values[:, i] for i, c in enumerate(cols)}})
    _add_server_columns(frame, rng, since, period, flat_columns, creeping_columns)
    return frame, labels, found


def _add_server_columns(
    frame: pd.DataFrame, rng: np.random.Generator, since: int, period: int, flat: int, creeping: int
) -> None:
    """make_series's near-constant and creeping columns (see its docstring), added in place."""
    n = len(frame)
    for i in range(flat):
        level = np.full(n, 8.0 + 4 * i)
        if i % 2:  # every other one steps up and back down by one a few times
            for at in rng.choice(n, 3, replace=False):
                level[at : at + int(rng.integers(10, period))] += 1
        frame[f"flat_{i}"] = level
    days = ((frame["timestamp"] - pd.Timestamp("2026-01-01")) / pd.Timedelta(days=1)).to_numpy()
    daily = 0.3 * np.sin(2 * np.pi * (np.arange(n) + since) / period)
    for i in range(creeping):
        frame[f"creep_{i}"] = 40 + 10 * i + 0.8 * days + daily + 0.02 * rng.standard_normal(n)


def make_images(
    n: int = 400,
    size: int = 28,
    *,
    anomaly_fraction: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale uint8 images (n, size, size) of soft rings of varying radius and position;
    a fraction gets a defect (a bright scratch or a dark blob). Returns (images, labels)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size), dtype=np.float32)
    for i in range(n):
        cy, cx = size / 2 + rng.normal(0, size / 16, 2)
        r = rng.uniform(size / 5, size / 3)
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        images[i] = np.exp(-((d - r) ** 2) / (2 * (size / 20) ** 2))
    images += rng.normal(0, 0.03, images.shape).astype(np.float32)
    labels = np.zeros(n, dtype=bool)
    n_bad = round(n * anomaly_fraction)
    for i in rng.choice(n, n_bad, replace=False) if n_bad else []:
        labels[i] = True
        if rng.random() < 0.5:  # scratch: a bright straight line
            y0, y1 = rng.integers(0, size, 2)
            xs = np.arange(size)
            ys = np.clip(np.round(y0 + (y1 - y0) * xs / size).astype(int), 0, size - 1)
            lo, hi = sorted(rng.integers(0, size, 2))
            hi = max(hi, lo + size // 2)
            images[i, ys[lo:hi], xs[lo:hi]] = 1.0
            images[i, np.clip(ys[lo:hi] + 1, 0, size - 1), xs[lo:hi]] = 1.0
        else:  # blob: a bright filled disc away from the ring
            by, bx = rng.integers(size // 5, size - size // 5, 2)
            images[i][(yy - by) ** 2 + (xx - bx) ** 2 < (size / 7) ** 2] = 1.0
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels
