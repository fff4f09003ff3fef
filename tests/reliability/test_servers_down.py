"""A server that is down: the MLflow tracking server (a closed port, then a real `mlflow
server` started there) and the database (a PostgreSQL URL to a closed port, or a server that
answers only after a while). A clear one-line error, quickly; nothing recorded or moved; the
next run works once the server is back."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import sqlalchemy as sa
from reliability_helpers import bare_env, closed_port, incident_batch, run_aemon

from aemon import RegistryError, StoreError
from aemon.store import AnomalyStore

SERVER_STARTUP_S = 180.0
# Far above the few seconds expected, far below the 12.5 min that MLflow's own retries took.
DOWN_REPORTED_WITHIN_S = 150.0

POSTGRES_ONLY = [pytest.param("postgres", marks=pytest.mark.postgres)]


def _error_line(res: subprocess.CompletedProcess[str]) -> str:
    """The one line `aemon` printed on stderr; fails on a traceback or several lines."""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@contextmanager
def _mlflow_server(backend_uri: str, port: int, log: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1:port; stopped with its process group."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                backend_uri,
                "--workers",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_STARTUP_S
        while True:
            assert proc.poll() is None, f"mlflow server ended:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"mlflow server not healthy:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_mlflow_down_is_one_line_in_seconds_and_the_next_run_works_once_it_is_back(
    model_store: str,
    aemon_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: str,
) -> None:
    from flows.score import score_inbox

    port = closed_port()
    tracking_uri = f"http://127.0.0.1:{port}"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = incident_batch(inbox / "a.csv")

    # aemon score: no task retries (no Prefect server), MLflow's own retries only
    res = run_aemon(
        "score",
        str(path),
        "--model",
        "metrics",
        env=bare_env(aemon_home, MLFLOW_TRACKING_URI=tracking_uri),
        timeout=DOWN_REPORTED_WITHIN_S,
    )
    assert res.returncode == 1
    line = _error_line(res)
    assert f"tracking server at {tracking_uri} cannot be reached (Connection refused)" in line, line

    # score-inbox, a Prefect flow run with its task retries on top
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    with pytest.raises(RegistryError, match="cannot be reached"):
        score_inbox(str(inbox), "metrics")
    assert sorted(p.name for p in inbox.iterdir()) == ["a.csv"]  # nothing moved
    assert AnomalyStore().list_batches() == []  # nothing recorded

    # the server is back, on the same port, over a copy of the store that holds the model
    backend = tmp_path / "mlflow.db"
    shutil.copyfile(model_store.removeprefix("sqlite:///"), backend)
    with _mlflow_server(f"sqlite:///{backend}", port, tmp_path / "mlflow-server.log"):
        [summary] = score_inbox(str(inbox), "metrics")
    assert summary["status"] == "done" and summary["n_flagged"] > 0
    assert sorted(p.name for p in inbox.iterdir()) == ["done"]
    [batch] = AnomalyStore().list_batches()
    assert batch.status == "done" and batch.monitored_at is not None


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
def test_database_down_is_retried_then_one_line_and_the_next_run_works(
    db_url: str,
    model: str,
    model_store: str,
    aemon_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: str,
) -> None:
    from flows.score import score_inbox

    down = sa.make_url(db_url).set(port=closed_port(), password="s3cret-pw")
    down_url = down.render_as_string(hide_password=False)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = incident_batch(inbox / "a.csv")

    env = bare_env(aemon_home, MLFLOW_TRACKING_URI=model_store, AEMON_DATABASE_URL=down_url)
    res = run_aemon("score", str(path), "--model", model, env=env)
    assert res.returncode == 1
    line = _error_line(res)
    assert "cannot connect to postgresql+psycopg://" in line and "5 tries in 7.5 s" in line, line
    assert "s3cret-pw" not in res.stdout + res.stderr

    monkeypatch.setenv("AEMON_DATABASE_URL", down_url)
    with pytest.raises(StoreError, match="5 tries"):
        score_inbox(str(inbox), model)
    assert sorted(p.name for p in inbox.iterdir()) == ["a.csv"]  # nothing moved

    monkeypatch.setenv("AEMON_DATABASE_URL", db_url)  # the database is back
    [summary] = score_inbox(str(inbox), model)
    assert summary["status"] == "done" and summary["n_flagged"] > 0
    assert sorted(p.name for p in inbox.iterdir()) == ["done"]
    with AnomalyStore(db_url) as store:
        [batch] = store.list_batches()
        assert batch.status == "done" and len(store.list_anomalies(limit=None)) == batch.n_flagged


@contextmanager
def _late_forwarder(target: tuple[str, int], after_s: float) -> Iterator[int]:
    """A port that refuses connections for `after_s` seconds, then forwards them to `target`:
    a database server that is restarting."""
    port = closed_port()
    stop = threading.Event()
    sockets: list[socket.socket] = []

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        if stop.wait(after_s):
            return
        listener = socket.create_server(("127.0.0.1", port))
        listener.settimeout(0.1)
        sockets.append(listener)
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(target)
            sockets.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=10)
        for s in sockets:
            s.close()


@pytest.mark.parametrize("db_url", POSTGRES_ONLY, indirect=True)
def test_a_database_that_comes_back_within_the_retries_is_used(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = sa.make_url(db_url)
    with _late_forwarder((url.host or "127.0.0.1", url.port or 5432), after_s=1.0) as port:
        late = url.set(port=port).render_as_string(hide_password=False)
        with caplog.at_level(logging.INFO, logger="aemon.store"), AnomalyStore(late) as store:
            assert store.list_batches() == []
    retries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert retries and all("cannot connect" in m for m in retries), caplog.text
