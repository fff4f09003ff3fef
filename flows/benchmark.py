"""Prefect overhead of the `score-batch` flow, for `aemon benchmark speed`.

The flow and the same library calls (load the model, score, write the rows) run on batches
of the same size but different content (a batch already scored is skipped by design).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from aemon import config, registry
from aemon.detector import Detector
from aemon.errors import ScoringError
from aemon.store import AnomalyStore
from flows.score import monitor, score_and_store, score_batch, score_inbox

BATCH_ROWS = 10_000
ONE_OFF_ROWS = 300  # `aemon score` on a day of 5-minute data


def one_off_score(path: Path, model: str) -> float:
    """Wall seconds of `aemon score PATH --model MODEL` as a user runs it: a fresh process, no
    Prefect server configured (so the flow's code runs without Prefect)."""
    env = config.child_environment(without=("PREFECT_API_URL",))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "score", str(path), "--model", model],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or " done " not in proc.stdout:
        raise RuntimeError(f"aemon score {path} failed: {proc.stdout[-1000:]} {proc.stderr[-2000:]}")
    return seconds


def _batch(folder: Path, name: str, n_rows: int, seed: int) -> Path:
    from aemon.benchmarks.speed import write_series_csv

    return write_series_csv(folder / f"{name}.csv", n_rows, seed)


def _direct(path: Path, model: str) -> float:
    """The flow's work without Prefect: the same task bodies, called directly."""
    start = time.perf_counter()
    detector, ref = registry.load_detector(model)
    with AnomalyStore() as store:
        outcome = score_and_store.fn(path, detector, ref, store)
        report = monitor.fn(outcome, path, detector, ref, store)[0] if outcome.status == "done" else None
    if report is None:
        raise ScoringError(f"direct scoring of {path} did not score and report: {outcome.summary()}")
    return time.perf_counter() - start


def _flow(path: Path, model: str) -> float:
    start = time.perf_counter()
    summary = score_batch(str(path), model)
    seconds = time.perf_counter() - start
    if summary["status"] != "done" or summary["drift_detected"] is None:  # timed the whole job?
        raise ScoringError(f"score-batch on {path} did not score and report: {summary}")
    return seconds


def measure_flow_overhead(
    detector: Detector, reference: pd.DataFrame, folder: Path, main_csv: Path, repeats: int = 3
) -> dict[str, Any]:
    """Register `detector`, then time `score-batch` runs against direct library calls (both
    score, write the rows and write a drift report)."""
    from aemon import drift

    name = "speed-benchmark"
    registry.register_detector(
        detector,
        name=name,
        data_source="generated",
        reference_data=reference[:2_000],
        drift_reference=drift.reference_profile(detector, reference),
    )
    model = f"{name}@challenger"
    first = _flow(_batch(folder, "warmup", BATCH_ROWS, 100), model)  # starts Prefect's server
    flow_s, direct_s = [], []
    for i in range(repeats):
        flow_s.append(_flow(_batch(folder, f"flow{i}", BATCH_ROWS, 200 + i), model))
        direct_s.append(_direct(_batch(folder, f"direct{i}", BATCH_ROWS, 300 + i), model))
    main = _flow(main_csv, model)
    # The one-off command: a warm-up run (disk caches), then the best of `repeats`.
    one_off_score(_batch(folder, "oneoff-warmup", ONE_OFF_ROWS, 600), model)
    one_off = [
        one_off_score(_batch(folder, f"oneoff{i}", ONE_OFF_ROWS, 610 + i), model) for i in range(repeats)
    ]
    # The scheduled path: one `score-inbox` run scores every new batch, so a flow run's fixed
    # cost is shared by the batches it finds.
    inbox = folder / "inbox"
    inbox.mkdir()
    for i in range(repeats):
        _batch(inbox, f"inbox{i}", BATCH_ROWS, 500 + i)
    # The batches were just written: no settle interval, or the run would leave them all.
    with config.environment(AEMON_SETTLE_SECONDS="0"):
        start = time.perf_counter()
        inbox_summaries = score_inbox(str(inbox), model)
        inbox_s = time.perf_counter() - start
    if [s["status"] for s in inbox_summaries] != ["done"] * repeats:
        raise ScoringError(f"score-inbox did not score every batch: {inbox_summaries}")
    # Prefect 3 stops a heartbeat thread at the end of every flow run (about 1 s, STACK.md);
    # the same runs without heartbeats show how much of the overhead that is.
    import prefect.settings
    from prefect.settings import temporary_settings

    no_beat: list[float] = []
    if hasattr(prefect.settings, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"):
        with temporary_settings({prefect.settings.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            for i in range(repeats):
                no_beat.append(_flow(_batch(folder, f"nobeat{i}", BATCH_ROWS, 400 + i), model))
    mean_flow, mean_direct = sum(flow_s) / repeats, sum(direct_s) / repeats
    no_beat_mean = sum(no_beat) / len(no_beat) if no_beat else None
    return {
        "batch_rows": BATCH_ROWS,
        "repeats": repeats,
        "first_run_s": first,
        "flow_s": mean_flow,
        "direct_s": mean_direct,
        "overhead_s": mean_flow - mean_direct,
        "flow_runs_s": flow_s,
        "direct_runs_s": direct_s,
        "main_flow_s": main,
        "one_off_rows": ONE_OFF_ROWS,
        "one_off_cli_runs_s": one_off,
        "one_off_cli_s": min(one_off),
        "inbox_flow_s": inbox_s,
        "inbox_overhead_per_batch_s": inbox_s / repeats - mean_direct,
        "flow_no_heartbeat_s": no_beat_mean,
        "overhead_no_heartbeat_s": no_beat_mean - mean_direct if no_beat_mean is not None else None,
    }
