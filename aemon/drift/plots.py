"""The batch plot (batch.png, about 30 KB): what a person looks at first."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aemon.config import apply_environment_defaults
from aemon.data.images import ImageBatch
from aemon.data.timeseries import SeriesBatch
from aemon.drift.columns import SCORE_COLUMN
from aemon.errors import ConfigError, DataError
from aemon.modalities import adapter_of

if TYPE_CHECKING:
    from aemon.results import ScoreResult


MAX_PLOT_POINTS = 5_000
MAX_PLOT_IMAGES = 8
PLOT_DPI = 72  # a summary plot, kept for every batch: about 30 KB
MAX_PLOT_EVENTS = 200  # shading thousands of spans makes drawing slow and the plot unreadable


def plot_batch(result: ScoreResult, path: str | Path, *, max_images: int = MAX_PLOT_IMAGES) -> Path:
    """Draw a scored batch to a PNG that a person can read at a glance; returns the path.

    Time series: each value column and the score (with the threshold) over time, flagged
    events shaded; long series are drawn as min/max envelopes. Images: the `max_images`
    highest-scoring flagged images (the highest-scoring ones when none is flagged) above their
    per-pixel error maps.
    """
    apply_environment_defaults()  # MPLCONFIGDIR under AEMON_HOME, before matplotlib loads
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if result.batch is None:
        raise DataError("this score result holds no batch: plot the result of Detector.score")
    adapter_of(result.batch).plot_batch(result, out, max_images)
    return out


def _save_png(fig: Any, out: Path) -> None:
    """A plot kept for every batch: 72 dpi, 64 colours (about a third of matplotlib's PNG)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=PLOT_DPI, format="png")
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(64).save(out, optimize=True)


def _envelope(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, low, high) with at most MAX_PLOT_POINTS buckets; keeps spikes a stride would drop."""
    step = max(1, math.ceil(len(y) / MAX_PLOT_POINTS))
    if step == 1:
        return x, y, y
    n = len(y) // step * step
    head = y[:n].reshape(-1, step)
    lo, hi = head.min(axis=1), head.max(axis=1)
    xs = x[:n:step]
    if n < len(y):
        lo, hi = np.r_[lo, y[n:].min()], np.r_[hi, y[n:].max()]
        xs = np.r_[xs, x[n : n + 1]]
    return xs, lo, hi


def draw_series(result: ScoreResult, series: SeriesBatch, out: Path) -> None:
    """The series plot of `plot_batch`."""
    from matplotlib.figure import Figure

    columns = list(result.columns)
    n = result.n_records
    x: np.ndarray = result.timestamps if result.timestamps is not None else np.arange(n)
    events = (
        result.events if result.events is not None else pd.DataFrame(columns=["start_index", "end_index"])
    )
    n_events = len(events)
    shaded = events.nlargest(MAX_PLOT_EVENTS, "peak_score") if n_events > MAX_PLOT_EVENTS else events
    panels = [*columns, SCORE_COLUMN]
    fig = Figure(figsize=(12, 1.8 * len(panels) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, panels, strict=True):
        y = np.asarray(result.scores if name == SCORE_COLUMN else series.values[:, columns.index(name)])
        xs, lo, hi = _envelope(x, y.astype(np.float64))
        if lo is hi:
            ax.plot(xs, y, lw=0.7, color="tab:blue" if name != SCORE_COLUMN else "black")
        else:
            ax.fill_between(xs, lo, hi, lw=0.5, color="tab:blue" if name != SCORE_COLUMN else "black")
        if name == SCORE_COLUMN:
            ax.axhline(result.threshold, color="tab:red", ls="--", lw=1, label="threshold")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_ylabel(name, fontsize=9)
        _shade(ax, x, shaded)
    shown = "shaded" if len(shaded) == n_events else f"strongest {len(shaded)} shaded"
    events_text = f"{n_events} event" + ("" if n_events == 1 else "s")
    fig.suptitle(f"{result.n_flagged} of {n} points flagged, {events_text} ({shown})")
    _save_png(fig, out)


def _shade(ax: Any, x: np.ndarray, events: pd.DataFrame) -> None:
    """The events' spans, full height, as one collection: what `axvspan` per event draws, at
    a fraction of the cost (400 spans on 2 panels took 0.7 s as patches)."""
    from matplotlib.collections import PolyCollection

    if len(events) == 0:
        return
    lo = np.asarray(ax.convert_xunits(x[events.start_index.to_numpy(dtype=np.int64)]), dtype=np.float64)
    hi = np.asarray(ax.convert_xunits(x[events.end_index.to_numpy(dtype=np.int64)]), dtype=np.float64)
    verts = np.stack(
        [
            np.c_[lo, np.zeros_like(lo)],
            np.c_[lo, np.ones_like(lo)],
            np.c_[hi, np.ones_like(hi)],
            np.c_[hi, np.zeros_like(hi)],
        ],
        axis=1,
    )
    spans = PolyCollection(
        list(verts), transform=ax.get_xaxis_transform(), facecolors="tab:red", alpha=0.25, lw=0
    )
    ax.add_collection(spans, autolim=False)


def draw_images(result: ScoreResult, batch: ImageBatch, out: Path, max_images: int) -> None:
    """The image plot of `plot_batch`."""
    from matplotlib.figure import Figure

    maps = result.error_maps
    if maps is None:
        raise ConfigError("an image drift plot needs the error maps of an image detector's result")
    candidates = np.flatnonzero(result.is_anomaly) if result.n_flagged else np.arange(result.n_records)
    top = candidates[np.argsort(-result.scores[candidates], kind="stable")][:max_images]
    k = max(len(top), 1)
    fig = Figure(figsize=(1.8 * k + 0.4, 4.2), layout="constrained")
    axes = fig.subplots(2, k, squeeze=False)
    vmax = float(maps[top].max()) if len(top) else 1.0
    for j in range(k):
        for ax in axes[:, j]:
            ax.set_axis_off()
        if j >= len(top):
            continue
        i = int(top[j])
        img = batch.images[i].transpose(1, 2, 0)
        axes[0, j].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        key = result.key(i)
        axes[0, j].set_title(f"{key[-18:]}\nscore {result.scores[i]:.4g}", fontsize=7)
        axes[1, j].imshow(maps[i], cmap="inferno", vmin=0, vmax=vmax)
    what = "flagged" if result.n_flagged else "highest-scoring (none flagged)"
    fig.suptitle(
        f"{result.n_flagged} of {result.n_records} images flagged; top {len(top)} {what}: image / error map"
    )
    _save_png(fig, out)
