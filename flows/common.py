"""Small pieces the flows share: the run logger, the retry rule for IO tasks, and the one-line
account of a batch that `aemon score` and `aemon serve` print.

Prefect is imported only where a Prefect run is under way, so `aemon score` can run the score
flow's code without importing it (see flows/orchestration.py).
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from aemon import config
from aemon.errors import (
    CalibrationError,
    ConfigError,
    DataError,
    ModelFormatError,
    ModelNotFoundError,
    NotFittedError,
    safe_text,
)

# Errors that repeat on a retry (bad data, bad settings, a broken or missing model): fail at once.
PERMANENT_ERRORS = (
    DataError,
    ConfigError,
    CalibrationError,
    ModelFormatError,
    NotFittedError,
    ModelNotFoundError,
)


def logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger inside a flow or task; a module logger when a task body runs via `.fn()`
    or the flow runs without Prefect."""
    if "prefect" not in sys.modules:
        return logging.getLogger("aemon.flows")
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("aemon.flows")


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry condition for IO tasks: retry hiccups (file shares, servers), not errors that repeat."""
    try:
        state.result()
    except PERMANENT_ERRORS:
        return False
    except Exception:
        return True
    return False


def describe_outcome(summary: dict[str, Any]) -> str:
    """One plain line on what happened to a batch (a `BatchOutcome.summary()`): its status, then
    the flagged count and drift verdict, or the reason it was quarantined or skipped, in full."""
    name = safe_text(Path(summary["source"]).name)
    status = summary["status"]
    batch = f" (batch {summary['batch_id']})" if summary.get("batch_id") is not None else ""
    model = f"{summary.get('model_name')}/{summary.get('model_version')}"
    if status == "quarantined":
        return f"quarantined {name}{batch}: {safe_text(summary.get('error'))}"
    if status == "skipped":
        reason = summary.get("error") or f"this content was already scored by {model}; nothing changed"
        return f"skipped {name}{batch}: {safe_text(reason)}"
    if status == "deferred":
        return f"deferred {name}: {safe_text(summary.get('error'))}"
    drift = {True: "drift", False: "no drift", None: "no drift report"}[summary.get("drift_detected")]
    counts = f"{summary.get('n_flagged', 0)} of {summary.get('n_records', 0)} flagged"
    line = f"{status} {name}{batch}: {counts}, {drift}"
    if summary.get("resumed"):
        line += "; rows written by an earlier run, its monitoring finished now"
    if summary.get("flag_rate_broken"):
        line += f"; {safe_text(summary.get('flag_rate'))}"
    for note in summary.get("warnings") or []:
        line += f"; warning: {safe_text(note)}"
    return line


def announce(message: str) -> None:
    """A line for the operator: always in the run's log, and on stdout (with the time) when
    `aemon serve` runs the flow, whose Prefect console logging stays quiet."""
    logger().info("%s", message)
    if config.announce_lines():
        sys.stdout.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} {safe_text(message)}\n")
        sys.stdout.flush()
