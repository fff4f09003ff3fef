"""Where aemon keeps its state, and the embedded defaults.

Everything defaults to files under `AEMON_HOME` (default `./.aemon`), so that aemon runs on
one machine with no configuration; each setting can point to a server instead:

| setting | default |
|---|---|
| `AEMON_HOME` | `./.aemon` |
| `AEMON_DATABASE_URL` | `sqlite:///<AEMON_HOME>/aemon.db` |
| `MLFLOW_TRACKING_URI` | `sqlite:///<AEMON_HOME>/mlflow.db` (artifacts in `<AEMON_HOME>/mlartifacts`) |
| `PREFECT_API_URL` | unset: Prefect's temporary local API, state in `<AEMON_HOME>/prefect` |
| `AEMON_ALERT_URLS` | unset: no alerts (Apprise URLs, separated by spaces or commas) |
| `AEMON_ALERT_MAX_PER_HOUR` | 12 alerts per model per hour (0: no limit) |
| `AEMON_REPORT_RETENTION` | `30d`: older report files are removed (`500`: keep 500 per model; `off`) |
| `AEMON_BENCH_DATA` | `<repo>/../shared/data`: benchmark data (never downloaded) |
| `AEMON_UI_TOKEN` | unset: `aemon ui` is read-only (feedback and recalibration need the token) |
| `AEMON_SETTLE_SECONDS` | 2: an inbox entry is scored once unchanged (size, time) this long |

This module is the only one that reads or changes the environment. Importing it (or any aemon
module) changes nothing: `apply_environment_defaults()` is called by the application once,
in `flows/__init__.py`, before Prefect is imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aemon.errors import ConfigError

MAX_PER_HOUR_ENV = "AEMON_ALERT_MAX_PER_HOUR"
DEFAULT_MAX_PER_HOUR = 12
BENCH_DATA_ENV = "AEMON_BENCH_DATA"
SETTLE_ENV = "AEMON_SETTLE_SECONDS"
DEFAULT_SETTLE_SECONDS = 2.0
FAULT_PAUSE_ENV = "AEMON_FAULT_PAUSE"
# The share of a reference `aemon train` keeps from fit for its quality gate (series: the last rows).
HOLDOUT_FRACTION = 0.2


def check_model_name(name: str) -> str:
    """`name`, when it can name a registered model (NAME@alias and NAME/version must parse)
    and the folders kept for it under AEMON_HOME (reports, error maps); ConfigError else."""
    if (
        not isinstance(name, str)
        or not name
        or name != name.strip()
        or name in (".", "..")
        or any(c in name for c in "@/\\:")
        or not name.isprintable()
    ):
        raise ConfigError(
            f"invalid model name {name!r}: it must not be empty, '.' or '..', hold '@', '/', '\\', "
            "':' or control characters, or start or end with a space"
        )
    return name


def _home_path() -> Path:
    return Path(os.environ.get("AEMON_HOME", ".aemon")).expanduser().resolve()


def aemon_home() -> Path:
    """The absolute folder that holds every embedded default (created on demand)."""
    home = _home_path()
    home.mkdir(parents=True, exist_ok=True)
    return home


def database_url() -> str:
    """SQLAlchemy URL of the anomaly database."""
    return os.environ.get("AEMON_DATABASE_URL") or f"sqlite:///{aemon_home() / 'aemon.db'}"


def mlflow_tracking_uri() -> str:
    """MLflow tracking URI; absolute, because Prefect workers change the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{aemon_home() / 'mlflow.db'}"


def mlflow_artifact_root() -> Path:
    """Artifact folder used when aemon creates an experiment on the embedded MLflow store."""
    return aemon_home() / "mlartifacts"


def reports_dir() -> Path:
    return aemon_home() / "reports"


def object_store_options(url: str) -> dict[str, Any]:
    """fsspec options for an object-store inbox: the S3 endpoint from `AWS_ENDPOINT_URL`, so
    that a cached client is one per endpoint (credentials come from the AWS_* variables)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if url.startswith(("s3://", "s3a://")) and endpoint:
        return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def inbox_mirrors_dir() -> Path:
    """Where object-store inboxes are mirrored while a run scores them (aemon.object_inbox)."""
    return aemon_home() / "inbox-mirrors"


def model_cache_dir() -> Path:
    """Where registered versions' detectors are kept once downloaded (see aemon.registry.local)."""
    return aemon_home() / "cache" / "models"


def report_retention() -> str:
    """How long per-batch report files are kept (parsed by `aemon.retention.Retention`)."""
    return os.environ.get("AEMON_REPORT_RETENTION", "30d")


def alert_urls() -> list[str]:
    raw = os.environ.get("AEMON_ALERT_URLS", "")
    return [u for u in raw.replace(",", " ").split() if u]


def max_alerts_per_hour() -> int:
    """`AEMON_ALERT_MAX_PER_HOUR` (default 12): alerts per model per hour; 0 = no limit."""
    raw = os.environ.get(MAX_PER_HOUR_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PER_HOUR
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"{MAX_PER_HOUR_ENV} must be a whole number >= 0 (0: no limit), got {raw!r}")
    return value


def settle_seconds() -> float:
    """`AEMON_SETTLE_SECONDS` (default 2): how long an inbox entry's size and modification
    time must stay unchanged before it is scored, so that a file still being written waits."""
    raw = os.environ.get(SETTLE_ENV, "").strip()
    if not raw:
        return DEFAULT_SETTLE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{SETTLE_ENV} must be a number of seconds >= 0, got {raw!r}")
    return value


def fault_pause(point: str) -> None:
    """Fault injection for the reliability tests: with `AEMON_FAULT_PAUSE=POINT[:SECONDS]`, the
    scoring process says so on stderr and sleeps at the named point (`after-claim`,
    `during-write`, `after-write`, `after-monitoring`), where a test kills it. Unset: nothing."""
    raw = os.environ.get(FAULT_PAUSE_ENV, "")
    name, _, seconds = raw.partition(":")
    if not raw or name != point:
        return
    import sys
    import time

    sys.stderr.write(f"aemon: pausing at {point} ({FAULT_PAUSE_ENV})\n")
    sys.stderr.flush()
    time.sleep(float(seconds or 600))


def bench_data_dir() -> Path | None:
    """`AEMON_BENCH_DATA` when set: the folder of shared benchmark data."""
    raw = os.environ.get(BENCH_DATA_ENV)
    return Path(raw) if raw else None


def prefect_api_url() -> str | None:
    """`PREFECT_API_URL` when set: a Prefect server to use instead of a local one."""
    return os.environ.get("PREFECT_API_URL") or None


def prefect_profile_api_url() -> str | None:
    """`PREFECT_API_URL` of the active profile in Prefect's profiles file, if it sets one."""
    import tomllib

    home = os.environ.get("PREFECT_HOME") or str(_home_path() / "prefect")
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or Path(home) / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(url) if url else None


ANNOUNCE_ENV = "AEMON_ANNOUNCE"  # set by `aemon serve` for its flow runs (child processes)


def announce_lines() -> bool:
    """Whether flow runs print a line per run and batch on stdout (under `aemon serve`)."""
    return bool(os.environ.get(ANNOUNCE_ENV))


def set_environment(**values: str | None) -> None:
    """Set environment variables for this process and its children (None: unset)."""
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Environment variables set (None: unset) for the block, restored afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    set_environment(**values)
    try:
        yield
    finally:
        set_environment(**saved)


def child_environment(*, without: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """This process's environment for a child process, less `without`, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if key not in without}
    env.update(extra)
    return env


def apply_output_defaults(verbose: bool) -> None:
    """Console defaults of the command line for Prefect and MLflow (the user's environment
    wins); set before they are imported, since both read them at import time."""
    defaults = {
        # Prefect's console shows nothing but critical lines unless --verbose: a failed task
        # is reported once, by aemon; the API (server UI) still gets every log.
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "INFO" if verbose else "CRITICAL",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "aemon",
        "MLFLOW_LOGGING_LEVEL": "INFO" if verbose else "WARNING",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


def ui_token() -> str | None:
    """The token `aemon ui` asks before any write; None (unset or blank): read-only."""
    token = os.environ.get("AEMON_UI_TOKEN", "").strip()
    return token or None


def apply_environment_defaults() -> None:
    """Quiet, offline defaults for Prefect, MLflow and matplotlib; the user's environment wins.

    Prefect and MLflow read settings at import time: the application calls this once, in
    `flows/__init__.py`, before anything imports them. Creates no folder.
    """
    home = _home_path()
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # An unreachable tracking server: MLflow's defaults (7 retries, backoff factor 2, 120 s
        # timeout) kept `aemon score` silent for 12.5 min with the task retries on top. Two
        # retries 0 and 2 s apart (plus up to 1 s jitter) and a 10 s timeout fail in seconds.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
        "MPLCONFIGDIR": str(home / "matplotlib"),
        "GIT_PYTHON_REFRESH": "quiet",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
