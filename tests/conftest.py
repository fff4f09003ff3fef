"""Shared fixtures. Every test runs with its own AEMON_HOME (a temporary folder), so the
embedded defaults (SQLite DB, MLflow store, Prefect home, reports) never touch the repo."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def aemon_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh AEMON_HOME per test; database and tracking URIs follow it unless a test sets them."""
    home = tmp_path_factory.mktemp("aemon_home")
    monkeypatch.setenv("AEMON_HOME", str(home))
    for var in ("AEMON_DATABASE_URL", "MLFLOW_TRACKING_URI", "AEMON_ALERT_URLS"):
        monkeypatch.delenv(var, raising=False)
    yield home


def pytest_report_header() -> str:
    present = "present" if SHARED_DATA.exists() else "missing"
    return f"shared data: {SHARED_DATA} ({present}); torch threads: {os.cpu_count()}"


@pytest.fixture(scope="session")
def _session_defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """aemon's environment defaults (PREFECT_HOME, telemetry off...) under a session folder,
    set before session fixtures import prefect or mlflow; the environment is restored after."""
    saved = dict(os.environ)
    os.environ["AEMON_HOME"] = str(tmp_path_factory.mktemp("session_home"))
    from aemon.config import apply_environment_defaults

    apply_environment_defaults()
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def prefect_harness(_session_defaults: None) -> Iterator[str]:
    """Prefect's test server, once per session (~10 s to start); yields its API URL.

    Flows called in tests run against it in-process; a CLI subprocess can reach it through
    PREFECT_API_URL. The heartbeat thread is switched off: it adds ~1 s to every flow run.
    """
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    updates = {}
    if hasattr(prefect.settings, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"):
        updates[prefect.settings.PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
    # A loaded 2-core machine can take more than the default 30 s to start the server.
    with prefect_test_harness(server_startup_timeout=120), prefect.settings.temporary_settings(updates):
        yield str(prefect.settings.PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def _mlflow_template(_session_defaults: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its schema created (~3 s), to copy per test."""
    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_store(aemon_home: Path, _mlflow_template: Path) -> str:
    """A real MLflow SQLite store at the default place in this test's AEMON_HOME."""
    import shutil

    shutil.copyfile(_mlflow_template, aemon_home / "mlflow.db")
    return f"sqlite:///{aemon_home / 'mlflow.db'}"
