"""`aemon benchmark`: detection quality (MNIST one-class, NAB, generated multivariate incidents,
SMD server metrics, unseen realistic series against PyOD), speed, with baselines measured in
the same run, and disk per batch.

Example:
    >>> report = run_benchmark("nab", quick=True)  # doctest: +SKIP
    >>> print(report.markdown); report.json_path, report.plot_paths  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from aemon.benchmarks.common import SuiteResult, resolve_data_dir
from aemon.benchmarks.report import BenchmarkReport, write_report
from aemon.errors import ConfigError

if TYPE_CHECKING:
    from aemon.benchmarks.speed import FlowOverhead

__all__ = ["SUITES", "BenchmarkReport", "run_benchmark"]

log = logging.getLogger(__name__)

SUITES = ("quality", "speed", "mnist", "nab", "multivariate", "smd", "realistic", "disk")


def run_benchmark(
    suite: str,
    *,
    data_dir: Path | None = None,
    quick: bool = False,
    out_dir: Path | None = None,
    progress: bool = True,
    flow_overhead: FlowOverhead | None = None,
) -> BenchmarkReport:
    """Run a suite (quality = mnist + nab + multivariate + smd + realistic; speed) and write its report.

    `data_dir`: the shared benchmark data (default `$AEMON_BENCH_DATA` or `<repo>/../shared/data`);
    `quick`: a small subset for tests (2 digits, 1 NAB signal per category, 1 SMD machine, 100k points,
    1 univariate + 1 multivariate realistic set);
    `out_dir`: default `<AEMON_HOME>/benchmarks/<suite>-<timestamp>/`;
    `flow_overhead`: speed only, times the Prefect flows (`flows.benchmark.measure_flow_overhead`).
    """
    if suite not in SUITES:
        raise ConfigError(f"benchmark suite must be one of {SUITES}, got {suite!r}")
    parts: list[SuiteResult] = []
    # Every suite but the generated ones (multivariate, realistic) reads the shared data.
    data = resolve_data_dir(data_dir) if suite not in ("multivariate", "realistic", "disk") else None
    if suite in ("quality", "mnist") and data is not None:
        from aemon.benchmarks.mnist import run_mnist

        parts.append(run_mnist(data, quick=quick, show_progress=progress))
    if suite in ("quality", "nab") and data is not None:
        from aemon.benchmarks.nab import run_nab

        parts.append(run_nab(data, quick=quick, show_progress=progress))
    if suite in ("quality", "multivariate"):
        from aemon.benchmarks.multivariate import run_multivariate

        parts.append(run_multivariate(quick=quick, show_progress=progress))
    if suite in ("quality", "smd") and data is not None:
        from aemon.benchmarks.smd import run_smd

        parts.append(run_smd(data, quick=quick, show_progress=progress))
    if suite in ("quality", "realistic"):
        from aemon.benchmarks.realistic import run_realistic

        parts.append(run_realistic(quick=quick, show_progress=progress))
    if suite == "disk":
        from aemon.benchmarks.disk import run_disk

        parts.append(run_disk(quick=quick, show_progress=progress))
    if suite == "speed" and data is not None:
        from aemon.benchmarks.speed import run_speed

        parts.append(run_speed(data, quick=quick, show_progress=progress, flow_overhead=flow_overhead))
    for part in parts:
        log.info("%s:\n%s", part.name, part.markdown)
    return write_report(suite, parts, out_dir=out_dir, data_dir=data, quick=quick)
