"""What the review pages show, computed from the anomaly database, the registry and the batch
files; no web framework here, so each piece can be tested on its own.

A batch's file is found where it was scored (`batches.source`), or in `done/` beside it
(where `score-inbox` moves it, possibly with a time suffix), and used only when its content
hash is the batch's. The batch page scores that file again with the same model version (a
version never changes, so the scores are the ones stored) to draw every point's score; the
events, their column contributions and the links to feedback come from the stored anomalies.
"""

from __future__ import annotations

import glob
import html
import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aemon import drift
from aemon.batches import DONE_DIR, batch_sha256
from aemon.errors import AemonError
from aemon.modalities import adapter_for
from aemon.store import Anomaly, AnomalyStore, Batch, FeedbackRow

if TYPE_CHECKING:
    from aemon.detector import Detector
    from aemon.results import ScoreResult

MAX_CHART_POINTS = 4_000  # per panel; longer series are drawn as min/max envelopes
MAX_CHART_EVENTS = 200  # shading more makes the chart slow and unreadable
MAX_RESCORED_RECORDS = 2_000_000  # larger batches are not scored again for their page


# --- the model's promise ------------------------------------------------------------------------


@dataclass(frozen=True)
class Promise:
    """What a model version's threshold promises: a false-alarm budget in events per time
    (series), or a pointwise false-positive rate; neither for an f1 threshold."""

    modality: str
    budget: str | None
    target_fpr: float | None
    window: int
    threshold: float
    method: str

    @property
    def text(self) -> str:
        if self.budget is not None:
            return f"false alarms (events): at most {self.budget}"
        if self.target_fpr is not None:
            return f"{100 * self.target_fpr:g} % of normal records flagged"
        return "no stated rate (threshold chosen on labels)"


def promise_of(detector: Detector) -> Promise:
    budget = detector.adapter_.event_budget(detector)
    return Promise(
        modality=detector.modality_,
        budget=budget,
        target_fpr=None if budget is not None else detector.threshold_info_.promised_fpr,
        window=int(detector.window),
        threshold=float(detector.threshold_),
        method=detector.threshold_info_.method,
    )


def rate_check(
    promise: Promise, batch: Batch, n_events: int, span: pd.Timedelta | None
) -> drift.FlagRateCheck | None:
    """The batch's alarms against the promise, as the score flow checks them
    (`drift.check_flag_rate`); None when there is no promise or the span is unknown."""
    if batch.status != "done":
        return None
    if promise.budget is not None:
        if span is None:
            return None
        return drift.event_rate_check(n_events, span, promise.budget)
    if promise.target_fpr is None:
        return None
    block = adapter_for(promise.modality).block_size(promise.window)
    return drift.flag_rate_check(batch.n_flagged, batch.n_records, promise.target_fpr, block_size=block)


# --- events of a series batch -------------------------------------------------------------------


@dataclass
class EventView:
    """One alarm of a series batch: its flagged points, the peak and each column's share."""

    number: int
    start: Any  # datetime or row number
    end: Any
    n_points: int
    peak: Anomaly
    contributions: dict[str, float]  # column -> share of the event's error (sums to 1)
    verdict: str | None = None

    @property
    def top_column(self) -> str | None:
        return max(self.contributions, key=self.contributions.__getitem__) if self.contributions else None


def _position(a: Anomaly) -> Any:
    if a.timestamp is not None:
        return a.timestamp
    try:
        return int(a.record_key)
    except ValueError:
        return a.record_key


def group_events(anomalies: Sequence[Anomaly], verdicts: dict[int, str] | None = None) -> list[EventView]:
    """Stored anomalies of a series batch grouped by their event, in time order; a record
    without an event number is an event of its own."""
    groups: dict[Hashable, list[Anomaly]] = {}
    for a in anomalies:
        key = a.details.get("event_id", f"record-{a.id}")
        groups.setdefault(key, []).append(a)
    events = []
    for rows in groups.values():
        rows.sort(key=lambda a: _position(a) if a.timestamp is not None else a.id)
        peak = max(rows, key=lambda a: a.score)
        totals: dict[str, float] = {}
        for a in rows:
            for col, err in (a.details.get("column_errors") or {}).items():
                if err is not None and math.isfinite(err):
                    totals[col] = totals.get(col, 0.0) + float(err)
        total = sum(totals.values())
        shares = {c: v / total for c, v in totals.items()} if total > 0 else {}
        events.append(
            EventView(
                0,
                _position(rows[0]),
                _position(rows[-1]),
                len(rows),
                peak,
                shares,
                (verdicts or {}).get(peak.id),
            )
        )
    events.sort(key=lambda e: (str(type(e.start)), e.start))
    for i, e in enumerate(events, 1):
        stored = e.peak.details.get("event_id")
        e.number = stored + 1 if isinstance(stored, int) else i  # as the anomaly page counts
    return events


# --- charts (Plotly figure JSON, built by hand: plotly's Python side is not needed) -------------


def plot_text(name: object) -> str:
    """A user string as Plotly text: Plotly renders a subset of HTML in labels, so tags in a
    column name must arrive as entities to be shown as written."""
    return html.escape(str(name), quote=False)


def envelope(x: np.ndarray, y: np.ndarray, limit: int = MAX_CHART_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ~`limit` points that keep every bucket's minimum and maximum (spikes stay)."""
    n = len(y)
    if n <= limit:
        return x, y
    step = math.ceil(n / (limit // 2))
    keep = []
    for start in range(0, n, step):
        part = y[start : start + step]
        finite = np.where(np.isfinite(part), part, np.nan)
        if np.isnan(finite).all():
            keep.append(start)
            continue
        lo, hi = int(np.nanargmin(finite)), int(np.nanargmax(finite))
        keep.extend(sorted({start + lo, start + hi}))
    idx = np.array(keep)
    return x[idx], y[idx]


def _json_x(x: np.ndarray) -> list[Any]:
    if np.issubdtype(x.dtype, np.datetime64):
        return [str(t) for t in x.astype("datetime64[ms]")]
    return x.tolist()


def _json_y(y: np.ndarray) -> list[float | None]:
    """Values to 5 significant digits (enough for a chart, a third of the bytes)."""
    return [float(f"{v:.5g}") if math.isfinite(v) else None for v in y.astype(np.float64).tolist()]


def _x_of(value: Any, shift: Any = None) -> Any:
    """An event bound as a chart x value, moved by `shift` (a Timedelta or a number of rows)."""
    if isinstance(value, datetime):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_convert(None) if stamp.tzinfo else stamp
        return (stamp + shift if shift is not None else stamp).isoformat()
    return value + shift if shift is not None and isinstance(value, int | float) else value


def _event_pad(x: np.ndarray) -> Any:
    """How far an event's band reaches beyond its first and last points: half a step, and at
    least 0.2 % of the chart, so that an event of one point is still a visible band."""
    if len(x) < 2:
        return None
    step = np.median(np.diff(x[: min(len(x), 10_000)])) / 2
    pad = max(step, (x[-1] - x[0]) / 500)
    return pd.Timedelta(pad) if np.issubdtype(x.dtype, np.datetime64) else float(pad)


def series_figure(
    columns: Sequence[str],
    values: np.ndarray,
    x: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    events: Sequence[EventView],
) -> dict[str, Any]:
    """One panel per column and one for the score with its threshold; events shaded."""
    panels = [*columns, "score"]
    n = len(panels)
    gap = 0.03
    height = (1 - gap * (n - 1)) / n
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        "height": 150 * n + 80,
        "margin": {"l": 70, "r": 20, "t": 24, "b": 40},
        "showlegend": False,
        "hovermode": "x",
        "xaxis": {"anchor": f"y{n}", "type": "date" if np.issubdtype(x.dtype, np.datetime64) else "linear"},
        "shapes": [],
        "plot_bgcolor": "#fff",
    }
    for i, name in enumerate(panels):
        axis = "y" if i == 0 else f"y{i + 1}"
        y = scores if name == "score" else values[:, i]
        xs, ys = envelope(x, np.asarray(y, dtype=np.float64))
        label = "score" if name == "score" else plot_text(name)
        data.append(
            {
                "type": "scatter",  # SVG: WebGL is missing in many headless and remote browsers
                "mode": "lines",
                "x": _json_x(xs),
                "y": _json_y(ys),
                "name": label,
                "yaxis": axis,
                "line": {"width": 1, "color": "#222" if name == "score" else "#1f6fb2"},
            }
        )
        top = 1 - i * (height + gap)
        layout[f"yaxis{i + 1 if i else ''}"] = {
            "domain": [max(top - height, 0), top],
            "title": {"text": label, "font": {"size": 12}},
            "zeroline": False,
            "gridcolor": "#eee",
        }
        if name == "score" and len(ys) and np.nanmin(ys) > 0:
            # Log scale: an incident scores 100x the threshold, which would flatten the rest.
            layout[f"yaxis{i + 1 if i else ''}"]["type"] = "log"
    if len(x):
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": _json_x(x[[0, -1]]),
                "y": [threshold, threshold],
                "name": "threshold",
                "yaxis": f"y{n}",
                "hoverinfo": "skip",
                "line": {"color": "#c0392b", "width": 1, "dash": "dash"},
            }
        )
    half = _event_pad(x)
    layout["annotations"] = []
    for e in sorted(events, key=lambda e: -e.peak.score)[:MAX_CHART_EVENTS]:
        layout["annotations"].append(
            {
                "x": _x_of(e.start),
                "xref": "x",
                "y": 1,
                "yref": "paper",
                "yanchor": "bottom",
                "text": str(e.number),
                "showarrow": False,
                "font": {"size": 10, "color": "#b42318"},
            }
        )
        layout["shapes"].append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": _x_of(e.start, -half if half is not None else None),
                "x1": _x_of(e.end, half),
                "y0": 0,
                "y1": 1,
                "fillcolor": "#e74c3c",
                "opacity": 0.25,
                "line": {"width": 0},
                "layer": "below",
            }
        )
    return {"data": data, "layout": layout}


def contributions_figure(events: Sequence[EventView]) -> dict[str, Any] | None:
    """Each event's column shares as one stacked bar."""
    shown = [e for e in events if e.contributions][:50]
    if not shown:
        return None
    columns = sorted({c for e in shown for c in e.contributions})
    labels = [f"event {e.number}" for e in shown]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "name": plot_text(col),
            "y": labels,
            "x": [round(100 * e.contributions.get(col, 0.0), 2) for e in shown],
            "hovertemplate": "%{x:.1f} %<extra>" + plot_text(col) + "</extra>",
        }
        for col in columns
    ]
    layout = {
        "barmode": "stack",
        "height": 60 + 26 * len(shown) + 40,
        "margin": {"l": 80, "r": 20, "t": 10, "b": 40},
        "xaxis": {"title": {"text": "share of the event's error (%)"}, "range": [0, 100]},
        "yaxis": {"autorange": "reversed"},
        "legend": {"orientation": "h", "y": -0.3, "traceorder": "normal"},
    }
    return {"data": data, "layout": layout}


# --- the review: database, registry and files, with caches ------------------------------------


class _Lru(OrderedDict[Hashable, Any]):
    """A bounded, thread-safe cache of what pages read (batch versions and files do not change)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def get_or(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = make()
        if value is None:  # not found (yet): asked again next time
            return None
        with self.lock:
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
        return value


@dataclass
class BatchRow:
    """One line of the batches page."""

    batch: Batch
    n_events: int | None
    check: drift.FlagRateCheck | None
    promise: Promise | None
    drift: Any  # DriftReportRow | None
    report_url: str | None


@dataclass
class ScoredBatch:
    """A batch file read and scored again for its page (`result.batch`: what was read)."""

    path: Path
    result: ScoreResult

    @property
    def values(self) -> np.ndarray | None:
        """Series values (n_points, n_columns); None for images."""
        return getattr(self.result.batch, "values", None)


class Review:
    """Reads for the pages. `load_detector(ref)` is `aemon.registry.load_detector`'s shape
    (returns (detector, ref)); passed in so the pages do not care where models live."""

    def __init__(
        self,
        store: AnomalyStore,
        reports_root: Path,
        load_detector: Callable[[str], tuple[Detector, Any]],
    ) -> None:
        self.store = store
        self.reports_root = reports_root.resolve()
        self._load_detector = load_detector
        self._promises = _Lru(256)
        self._files = _Lru(1024)
        self._spans = _Lru(1024)
        self._scored = _Lru(4)

    # -- models --

    def detector(self, name: str, version: str) -> Detector:
        return self._load_detector(f"{name}/{version}")[0]

    def promise(self, name: str, version: str) -> Promise | None:
        """The version's promise; None when the version cannot be loaded."""

        def make() -> Promise | None:
            try:
                return promise_of(self.detector(name, version))
            except AemonError:
                return None

        result: Promise | None = self._promises.get_or((name, version), make)
        return result

    # -- files --

    def report_url(self, path: str | None) -> str | None:
        """The URL under /reports/ of a file inside the reports folder, else None."""
        if not path:
            return None
        try:
            rel = Path(path).resolve().relative_to(self.reports_root)
        except (ValueError, OSError):
            return None
        return "/reports/" + rel.as_posix()

    def batch_file(self, batch: Batch) -> Path | None:
        """The batch's file or folder, found where it was scored or in done/ beside it, with
        the batch's content hash; None when it is gone or changed."""

        def find() -> Path | None:
            source = Path(batch.source)
            done = source.parent / DONE_DIR
            candidates = [source, done / source.name]
            stem = source.name.split(".", 1)[0]
            candidates += sorted(Path(p) for p in glob.glob(str(done / (glob.escape(stem) + ".*"))))
            for path in candidates:
                try:
                    if path.exists() and batch_sha256(path) == batch.content_sha256:
                        return path
                except (OSError, AemonError):
                    continue
            return None

        found: Path | None = self._files.get_or((batch.id, batch.content_sha256), find)
        return found

    def series_span(self, batch: Batch, detector: Detector) -> pd.Timedelta | None:
        """First to last timestamp of a series batch (None: no file, no time column, or too
        many records to read for a page)."""

        def read() -> pd.Timedelta | None:
            path = self.batch_file(batch) if batch.n_records <= MAX_RESCORED_RECORDS else None
            if path is None:
                return None
            from aemon.data.timeseries import load_series

            try:
                _, series = load_series(path, detector.schema_)
            except AemonError:
                return None
            stamps = series.timestamps
            if stamps is None or not len(stamps):
                return None
            return pd.Timedelta(stamps[-1] - stamps[0])

        span: pd.Timedelta | None = self._spans.get_or((batch.id, batch.content_sha256), read)
        return span

    # -- batches --

    def batch_rows(self, limit: int) -> list[BatchRow]:
        rows = []
        for batch in self.store.list_batches(limit=limit):
            report = self.store.drift_report_of(batch.id) if batch.status == "done" else None
            promise = self.promise(batch.model_name, batch.model_version) if batch.status == "done" else None
            n_events, check = None, None
            if promise is not None:
                if adapter_for(promise.modality).has_events:
                    anomalies = self.store.list_anomalies(batch_id=batch.id, limit=None)
                    n_events = len(group_events(anomalies))
                span = None
                if promise.budget is not None:
                    span = self.series_span(batch, self.detector(batch.model_name, batch.model_version))
                check = rate_check(promise, batch, n_events or 0, span)
            rows.append(
                BatchRow(
                    batch,
                    n_events,
                    check,
                    promise,
                    report,
                    self.report_url(report.html_path) if report else None,
                )
            )
        return rows

    def verdicts(self, model_name: str) -> dict[int, FeedbackRow]:
        return {f.anomaly_id: f for f in self.store.list_feedback(model_name=model_name)}

    def scored(self, batch: Batch) -> ScoredBatch | None:
        """The batch file scored again by its model version (None: file gone or changed)."""

        def score() -> ScoredBatch | None:
            path = self.batch_file(batch)
            if path is None:
                return None
            detector = self.detector(batch.model_name, batch.model_version)
            read = detector.read(path)  # once: the result keeps it (values, images)
            return ScoredBatch(path, detector.score(read))

        scored: ScoredBatch | None = self._scored.get_or((batch.id, batch.content_sha256), score)
        return scored

    def overlay_png(self, batch: Batch, anomaly: Anomaly) -> bytes | None:
        """A flagged image in grey with its error map in red over it, as PNG (None: the image
        or its error map is gone). The map's brightness is the red's opacity, so that the
        image shows through where it was reconstructed well."""
        from PIL import Image

        map_path = anomaly.details.get("error_map")
        image = self.image_array(batch, anomaly.record_key)
        if image is None or not map_path or self.report_url(map_path) is None:
            return None
        try:
            with Image.open(map_path) as opened:
                error = np.asarray(opened.convert("L"), dtype=np.float32) / 255
        except OSError:
            return None
        grey = image.mean(axis=-1) if image.ndim == 3 else image
        if grey.shape != error.shape:
            return None
        alpha = 0.85 * error[..., None]
        base = np.repeat(grey[..., None] * 0.75, 3, axis=-1)
        red = np.array([1.0, 0.15, 0.1], dtype=np.float32)
        rgb = (1 - alpha) * base + alpha * red
        return _png(np.clip(rgb * 255, 0, 255).astype(np.uint8))

    def image_png(self, batch: Batch, key: str) -> bytes | None:
        """One image of an image batch as PNG (as the model saw it), or None."""
        image = self.image_array(batch, key)
        if image is None:
            return None
        return _png(np.clip(image * 255, 0, 255).astype(np.uint8))

    def image_array(self, batch: Batch, key: str) -> np.ndarray | None:
        """One image of an image batch, (H, W) or (H, W, 3) in [0, 1], or None."""
        scored = self.scored(batch)
        if scored is None or scored.result.image_keys is None:
            return None
        try:
            i = scored.result.image_keys.index(key)
        except ValueError:
            return None
        images = getattr(scored.result.batch, "images", None)
        if images is None:
            return None
        img = images[i].transpose(1, 2, 0)
        result: np.ndarray = img[..., 0] if img.shape[-1] == 1 else img
        return result


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
