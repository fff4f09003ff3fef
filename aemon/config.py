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
"""

from __future__ import annotations

import os
from pathlib import Path


def aemon_home() -> Path:
    """The absolute folder that holds every embedded default (created on demand)."""
    home = Path(os.environ.get("AEMON_HOME", ".aemon")).expanduser().resolve()
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


def report_retention() -> str:
    """How long per-batch report files are kept (parsed by `aemon.retention.Retention`)."""
    return os.environ.get("AEMON_REPORT_RETENTION", "30d")


def alert_urls() -> list[str]:
    raw = os.environ.get("AEMON_ALERT_URLS", "")
    return [u for u in raw.replace(",", " ").split() if u]


def apply_environment_defaults() -> None:
    """Quiet, offline defaults for Prefect, MLflow and matplotlib; the user's environment wins.

    Call before importing prefect or mlflow: both read settings at import time.
    """
    home = aemon_home()
    defaults = {
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
        "DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MPLCONFIGDIR": str(home / "matplotlib"),
        "GIT_PYTHON_REFRESH": "quiet",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
