"""Benchmark reports: one folder per run under `<AEMON_HOME>/benchmarks/<suite>-<timestamp>/`
holding `report.md`, `results.json` (data, protocol, seeds, versions, figures, baselines) and
one plot per suite."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aemon import config
from aemon.benchmarks.common import SuiteResult, versions

log = logging.getLogger(__name__)


@dataclass
class BenchmarkReport:
    """What `run_benchmark` measured: the Markdown tables, and where the files went."""

    suite: str
    markdown: str
    record: dict[str, Any]
    out_dir: Path
    json_path: Path
    markdown_path: Path
    plot_paths: list[Path] = field(default_factory=list)


def new_figure(width: float, height: float) -> tuple[Any, Any]:
    """A matplotlib figure on the Agg backend (no display needed, nothing in pyplot's state)."""
    config.apply_environment_defaults()  # MPLCONFIGDIR under AEMON_HOME
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot(1, 1, 1)


def grouped_bars(
    groups: Sequence[str], series: Mapping[str, Sequence[float]], *, ylabel: str, title: str, path: Path
) -> Path:
    """One group of bars per entry of `groups`, one bar per series, values in [0, 1]; saved."""
    fig, ax = new_figure(8, 3.6)
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, vals) in enumerate(series.items()):
        ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=label)
    ax.set_xticks(x, list(groups))
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # outside: bars fill the axes
    ax.set_title(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def default_out_dir(suite: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return config.aemon_home() / "benchmarks" / f"{suite}-{stamp}"


def write_report(
    suite: str, parts: list[SuiteResult], *, out_dir: Path | None, data_dir: Path | None, quick: bool
) -> BenchmarkReport:
    """Write Markdown, JSON and plots; return the report (Markdown printed by the CLI)."""
    folder = Path(out_dir) if out_dir is not None else default_out_dir(suite)
    folder.mkdir(parents=True, exist_ok=True)
    env = versions()
    when = datetime.now(UTC).isoformat(timespec="seconds")
    head = [
        f"## aemon benchmark: {suite}{' (quick subset)' if quick else ''}",
        "",
        f"Run {when} on {env['cpus']} CPUs (load average {env.get('load_average_1min', '?')} at the end: "
        "timings on a shared machine are noisy); torch "
        f"{env['torch']}, pyod {env['pyod']}, aemon {env['aemon']}. Data: {data_dir or 'generated'}.",
    ]
    markdown = "\n\n".join(["\n".join(head), *(p.markdown for p in parts)]) + "\n"
    plots: list[Path] = []
    for part in parts:
        for draw in part.plots:
            try:
                plots.append(draw(folder))
            except Exception as exc:  # a plot must not lose the figures
                log.error("plot for %s failed: %s", part.name, exc)
    record = {
        "suite": suite,
        "quick": quick,
        "time": when,
        "data_dir": str(data_dir) if data_dir else None,
        "versions": env,
        "results": {p.name: p.record for p in parts},
        "plots": [str(p) for p in plots],
    }
    json_path = folder / "results.json"
    json_path.write_text(json.dumps(record, indent=1, default=_jsonable))
    md_path = folder / "report.md"
    md_path.write_text(markdown)
    log.info("benchmark report written to %s", folder)
    return BenchmarkReport(suite, markdown, record, folder, json_path, md_path, plots)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
