"""Disk suite: what a schedule leaves on disk per 1,000 batches (report files and database).

Day-long batches of 288 rows (5-minute steps) × 3 columns from the generator, every tenth with a
level shift, are scored and monitored as `score-inbox` does (rows, small report, batch plot when
something is flagged, Evidently's report on drift) into a fresh SQLite database and reports
folder; the figure is their size per batch × 1,000.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aemon.benchmarks.common import SuiteResult, progress
from aemon.errors import ScoringError

WINDOW, EPOCHS, REFERENCE_ROWS, BATCH_ROWS = 32, 20, 6_000, 288


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def run_disk(*, quick: bool = False, seed: int = 0, show_progress: bool = True) -> SuiteResult:
    from aemon import drift
    from aemon.batches import score_batch_into_store
    from aemon.detector import Detector
    from aemon.store import AnomalyStore
    from aemon.synthetic import make_series

    n_batches = 20 if quick else 100
    reference = make_series(REFERENCE_ROWS, 3, seed=seed)[0]
    detector = Detector(window=WINDOW, epochs=EPOCHS, seed=seed, progress=False).fit(reference)
    profile = drift.reference_profile(detector, reference)
    counts = {"flagged": 0, "drifted": 0, "evidently": 0}
    with tempfile.TemporaryDirectory(prefix="aemon-disk-") as tmp:
        folder = Path(tmp)
        reports, inbox, db = folder / "reports", folder / "inbox", folder / "aemon.db"
        inbox.mkdir()
        with AnomalyStore(f"sqlite:///{db}") as store:
            for i in progress(range(n_batches), "batches", show_progress):
                incidents = ("level_shift",) if i % 10 == 0 else ()
                path = inbox / f"day-{i}.csv"
                make_series(BATCH_ROWS, 3, seed=seed + 100 + i, incidents=incidents)[0].to_csv(
                    path, index=False
                )
                out = score_batch_into_store(
                    store, detector, path, model_name="m", model_version="1", error_map_root=reports
                )
                if out.result is None or out.batch_id is None:
                    raise ScoringError(f"{path}: {out.status} {out.error}")
                report = drift.monitor_batch(out.result, profile, reports / "m" / f"{out.batch_id}")
                store.record_drift_report(out.batch_id, **report.row())
                counts["flagged"] += out.n_flagged > 0
                counts["drifted"] += report.drift_detected
                counts["evidently"] += report.evidently_path is not None
        report_bytes, db_bytes = _size(reports), db.stat().st_size
    per_k = {"reports_mb": report_bytes / n_batches, "database_mb": db_bytes / n_batches}
    per_k = {k: v * 1_000 / 1e6 for k, v in per_k.items()}
    record: dict[str, Any] = {
        "data": f"generator: {n_batches} batches of {BATCH_ROWS} rows x 3 columns, "
        "every tenth with a level shift",
        "detector": {"window": WINDOW, "epochs": EPOCHS, "reference_rows": REFERENCE_ROWS},
        "batches": n_batches,
        **counts,
        "per_1000_batches_mb": per_k,
    }
    lines = [
        "## Disk per 1,000 batches",
        "",
        f"{record['data']}; {counts['flagged']} with flagged records (plot drawn), "
        f"{counts['drifted']} drifted ({counts['evidently']} Evidently reports).",
        "",
        "| what | MB per 1,000 batches |",
        "|---|---:|",
        f"| report files (summary, plots, Evidently on drift) | {per_k['reports_mb']:.1f} |",
        f"| database (batches, flagged rows, drift records) | {per_k['database_mb']:.1f} |",
    ]
    return SuiteResult("disk", "\n".join(lines), record)
