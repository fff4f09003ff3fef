"""Shared fixtures. Every test runs with its own AEMON_HOME (a temporary folder), so the
embedded defaults (SQLite DB, MLflow store, Prefect home, reports) never touch the repo."""

from __future__ import annotations

import os
import shutil
import tempfile
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


_SESSION_HOME: Path | None = None
_SAVED_ENVIRONMENT: dict[str, str] = {}
_ROOT_ENTRIES: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module is collected (importing `flows` sets aemon's environment
    defaults, and Prefect reads PREFECT_HOME when imported): AEMON_HOME and the homes derived
    from it in a session folder, so nothing lands in the working directory (Prefect's result
    storage went to ./.aemon/prefect/storage). The environment is restored at the end."""
    global _SESSION_HOME
    _SAVED_ENVIRONMENT.update(os.environ)
    _SESSION_HOME = Path(tempfile.mkdtemp(prefix="aemon-tests-"))
    os.environ["AEMON_HOME"] = str(_SESSION_HOME)
    for var in ("PREFECT_HOME", "PREFECT_LOCAL_STORAGE_PATH", "MPLCONFIGDIR"):
        os.environ.pop(var, None)  # derived from AEMON_HOME below, never the developer's own
    # Inbox files written by a test (or a module fixture) are scored at once; the tests of
    # the settle interval set it themselves.
    os.environ["AEMON_SETTLE_SECONDS"] = "0"
    # Hypothesis keeps its example database in ./.hypothesis otherwise.
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(_SESSION_HOME / "hypothesis")
    from aemon.config import apply_environment_defaults

    apply_environment_defaults()
    _ROOT_ENTRIES.update(_root_entries(config))


def _root_entries(config: pytest.Config) -> set[str]:
    return {p.name for p in config.rootpath.iterdir()} - {".pytest_cache"}  # pytest's own cache


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Tests write only in temporary folders: fail the run if one left something in the
    repository (checked at the top level, where every default home lands)."""
    new = sorted(_root_entries(session.config) - _ROOT_ENTRIES)
    if new:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"tests wrote into {session.config.rootpath}: {new}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    os.environ.clear()
    os.environ.update(_SAVED_ENVIRONMENT)
    if _SESSION_HOME is not None:
        shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[str]:
    """Prefect's test server, once per session (~10 s to start); yields its API URL.

    Flows called in tests run against it in-process; a CLI subprocess can reach it through
    PREFECT_API_URL. The heartbeat thread is switched off: it adds ~1 s to every flow run.
    """
    import prefect.settings
    from prefect.testing.utilities import prefect_test_harness

    updates = {}
    if hasattr(prefect.settings, "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"):
        updates[prefect.settings.PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
    # None: PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (aemon's default) instead of a
    # fixed 30 s, which a loaded machine exceeds.
    with prefect_test_harness(server_startup_timeout=None), prefect.settings.temporary_settings(updates):
        yield str(prefect.settings.PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
