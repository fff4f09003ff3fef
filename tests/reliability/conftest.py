"""Fault injection: real processes killed with SIGKILL, servers that are down, a writer still
at work in the inbox, two workers on one inbox. Real parts only: SQLite files and PostgreSQL
(the integration suite's `db_url`), an MLflow store or server, Prefect's test server, `aemon`
subprocesses and a local HTTP receiver for alerts.

One small detector is trained per module (`model_store`); each test gets its own AEMON_HOME
and database. Every process a test starts is stopped by its PID.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from reliability_helpers import Webhook

from aemon import Detector, drift, registry


def _integration_fixtures() -> Any:
    """tests/integration/conftest.py under another module name: its database fixtures (a
    SQLite file, or a fresh PostgreSQL schema) serve this suite as they are."""
    path = Path(__file__).parents[1] / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("aemon_integration_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_shared = _integration_fixtures()
postgres_admin_url = _shared.postgres_admin_url
db_url = _shared.db_url

MODEL = "metrics"


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    from aemon.synthetic import make_series

    return make_series(2_600, 2, seed=1)[0]


@pytest.fixture(scope="module")
def model_store(
    series: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory, _mlflow_template: Path
) -> str:
    """An MLflow SQLite store holding `metrics` (champion) with its drift reference profile."""
    home = tmp_path_factory.mktemp("reliability_models")
    shutil.copyfile(_mlflow_template, home / "mlflow.db")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEMON_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        reference = series.iloc[:2_000]
        det = Detector(window=16, epochs=2, samples_per_epoch=1024, progress=False).fit(reference)
        registry.log_training(
            det, name=MODEL, data_source="test", drift_reference=drift.reference_profile(det, reference)
        )
    return uri


@pytest.fixture
def model(model_store: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The module's registered model; database and reports stay in this test's AEMON_HOME."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", model_store)
    return MODEL


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook.received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
