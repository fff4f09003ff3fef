"""Shared pieces of the benchmark suites: where the data lives, versions, timers, metrics."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aemon import config
from aemon.errors import ConfigError

T = TypeVar("T")


def resolve_data_dir(data_dir: Path | str | None = None) -> Path:
    """The shared benchmark data: `data_dir`, else `$AEMON_BENCH_DATA`, else `<repo>/../shared/data`.

    Nothing is ever downloaded: a missing folder is a clear error.
    """
    if data_dir is None:
        data_dir = config.bench_data_dir() or Path(__file__).resolve().parents[3] / "shared" / "data"
    path = Path(data_dir).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(
            f"benchmark data folder {path} not found; pass data_dir or set {config.BENCH_DATA_ENV} to "
            "the folder that holds nab/ and mnist/ (aemon never downloads benchmark data)"
        )
    return path


def require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ConfigError(f"{what} not found at {path}; see the benchmark data README")
    return path


def versions() -> dict[str, str]:
    """Versions of everything a figure depends on, for the JSON record."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": str(os.cpu_count())}
    for pkg in ("aemon", "torch", "numpy", "pandas", "scikit-learn", "pyod", "mlxtend", "prefect"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    with suppress(OSError):
        out["load_average_1min"] = f"{os.getloadavg()[0]:.2f}"
    return out


@dataclass
class Timer:
    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    t = Timer()
    start = time.perf_counter()
    try:
        yield t
    finally:
        t.seconds = time.perf_counter() - start


def progress(items: Iterable[T], desc: str, enabled: bool = True, total: int | None = None) -> Iterable[T]:
    """Progress of a long loop on stderr: a tqdm bar on a terminal, else one line per item
    (a run in CI or under nohup is not silent for an hour)."""
    if not enabled:
        return items
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, total=total, leave=False)
    return _progress_lines(items, desc, total)


def _progress_lines(items: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    n = total if total is not None else (len(items) if isinstance(items, Sized) else None)
    start = time.perf_counter()
    for i, item in enumerate(items, 1):
        yield item
        line = f"{desc}: {i}{f'/{n}' if n else ''} done, {time.perf_counter() - start:.0f} s"
        print(line, file=sys.stderr)  # noqa: T201 (what tqdm draws on a terminal, as plain lines)


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """F1 = 2TP / (2TP + FP + FN); 0 when there is nothing to find and nothing found."""
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


@dataclass
class SuiteResult:
    """One suite's figures: a Markdown section, the JSON-ready record, and plots to draw."""

    name: str
    markdown: str
    record: dict[str, Any]
    plots: list[Any] = field(default_factory=list)  # callables (folder) -> Path
