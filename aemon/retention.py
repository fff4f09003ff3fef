"""Report retention: old per-batch report folders (summary, plot, Evidently's report on drift)
and error maps are removed, so a schedule does not fill the disk.

`AEMON_REPORT_RETENTION` sets it (see `aemon.config`): `30d` keeps 30 days (the default),
`500` keeps each model's newest 500 batches, `off` keeps everything. The database rows stay
(verdict, drifted share and the whole summary are in `drift_reports.details`); only files go,
and only inside the reports folder.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aemon.errors import ConfigError

if TYPE_CHECKING:
    from aemon.store import AnomalyStore

log = logging.getLogger(__name__)

DEFAULT_RETENTION = "30d"


@dataclass(frozen=True)
class Retention:
    """How long per-batch reports are kept: `days`, or each model's newest `count` batches
    (None and None: forever)."""

    days: float | None = None
    count: int | None = None

    @classmethod
    def parse(cls, text: str) -> Retention:
        """`30d` (days), `500` (batches per model) or `off`."""
        value = text.strip().lower()
        if value in ("off", "none", "forever"):
            return cls()
        days = re.fullmatch(r"(\d+(?:\.\d+)?)\s*d(?:ays?)?", value)
        if days and float(days.group(1)) > 0:
            return cls(days=float(days.group(1)))
        if value.isdigit() and int(value) > 0:
            return cls(count=int(value))
        raise ConfigError(
            f"AEMON_REPORT_RETENTION must be days such as '30d', a count of batches such as '500', "
            f"or 'off'; got {text!r}"
        )


@dataclass(frozen=True)
class Pruned:
    n_batches: int
    n_bytes: int


def prune_reports(store: AnomalyStore, root: Path, retention: Retention, now: datetime) -> Pruned:
    """Remove the report folders and error maps of batches beyond `retention` (as of `now`)."""
    if retention.days is None and retention.count is None:
        return Pruned(0, 0)
    root = root.resolve()
    rows = store.list_drift_reports(limit=None)  # newest first
    seen: dict[str, int] = defaultdict(int)
    n_batches = n_bytes = 0
    for row in rows:
        seen[row.model_name] += 1
        too_old = retention.days is not None and row.created_at < now - timedelta(days=retention.days)
        too_many = retention.count is not None and seen[row.model_name] > retention.count
        if not (too_old or too_many):
            continue
        # The report folder, and the folder of the batch's error maps (images).
        folders = [Path(row.html_path).parent, root / row.model_name / str(row.batch_id)]
        freed = sum(_remove(folder, root) for folder in folders)
        n_batches += freed > 0
        n_bytes += freed
    if n_batches:
        log.info("removed the reports of %d old batches (%.1f MB)", n_batches, n_bytes / 1e6)
    return Pruned(n_batches, n_bytes)


def _remove(folder: Path, root: Path) -> int:
    """Delete `folder` if it lies inside `root`; returns the bytes freed."""
    folder = folder.resolve()
    if not folder.is_dir() or root not in folder.parents:
        return 0
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    return size
