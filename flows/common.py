"""Small pieces the flows share: the run logger and the retry rule for IO tasks."""

from __future__ import annotations

import logging
from typing import Any

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from aemon.errors import (
    CalibrationError,
    ConfigError,
    DataError,
    ModelFormatError,
    ModelNotFoundError,
    NotFittedError,
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
    """The run logger inside a flow or task; a module logger when a task body runs via `.fn()`."""
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
