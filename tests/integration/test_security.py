"""Security (issue 13): credentials stay in their settings, names cannot lead out of
AEMON_HOME, user strings reach HTML escaped, and the servers aemon starts listen on 127.0.0.1.

Real parts throughout: PostgreSQL (a database URL with a password; trust authentication
ignores it), an HTTP receiver for the alerts, `aemon` subprocesses against the session's
Prefect test server, the real `aemon ui` and a real `prefect server start`."""

from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from rich.console import Console

from aemon import ConfigError, Detector, config, drift, registry
from aemon.batches import save_error_map, score_batch_into_store
from aemon.store import AnomalyStore
from aemon.synthetic import make_series

PASSWORD = f"Pw-{secrets.token_hex(6)}-s3cr3t"  # distinctive: grepped for everywhere
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def reference() -> object:
    return make_series(1_500, 2, seed=1)[0]


def tiny_detector(reference: object) -> Detector:
    return Detector(window=16, epochs=2, samples_per_epoch=512, progress=False).fit(reference)


def run_aemon(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def user_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "AEMON_"))}
    env.update(AEMON_HOME=str(home), NO_COLOR="1", COLUMNS="200", **extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening_addresses(port: int) -> set[str]:
    """The local addresses that listen on TCP `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, 32, 8)]
                    found.add(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return found


# --- credentials ---------------------------------------------------------------------------


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook on 127.0.0.1: /ok answers 200 and keeps the body, anything else 500."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = self.path.startswith("/ok")
                if ok:
                    receiver.bodies.append(body)
                self.send_response(200 if ok else 500)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def secret_database(postgres_admin_url: str) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema, and a URL to it that carries PASSWORD."""
    schema = f"aemon_secret_{secrets.token_hex(5)}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = (
        sa.make_url(postgres_admin_url)
        .set(password=PASSWORD)
        .update_query_dict({"options": f"-csearch_path={schema}"})
    )
    try:
        yield url.render_as_string(hide_password=False), schema
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def database_text(admin_url: str, schema: str) -> str:
    """Every row of every table in `schema`, as text."""
    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as conn:
            tables = conn.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %(s)s", {"s": schema}
            ).scalars()
            return "\n".join(
                str(row)
                for t in list(tables)
                for row in conn.exec_driver_sql(f'SELECT * FROM "{schema}"."{t}"')
            )
    finally:
        engine.dispose()


def prefect_logs_and_parameters(api_url: str) -> str:
    """The logs and parameters of every flow run on the Prefect server, as text."""
    import asyncio

    from prefect.client.orchestration import get_client

    async def collect() -> str:
        texts: list[str] = []
        async with get_client() as client:
            offset = 0
            while runs := await client.read_flow_runs(limit=200, offset=offset):  # the session's
                texts += [json.dumps(r.parameters, default=str) for r in runs]
                offset += len(runs)
            offset = 0
            while logs := await client.read_logs(limit=200, offset=offset):
                texts += [log.message for log in logs]
                offset += len(logs)
        return "\n".join(texts)

    return asyncio.run(collect())


def files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_credentials_are_never_printed_logged_or_stored(
    secret_database: tuple[str, str],
    postgres_admin_url: str,
    receiver: Receiver,
    prefect_harness: str,
    _mlflow_template: Path,
    tmp_path: Path,
    reference: object,
) -> None:
    """A database URL and alert URLs with a password (and a token in a webhook's path and
    query): it is in none of the output of the commands (-v: with library logs), no file
    under AEMON_HOME (databases, MLflow store and artifacts, reports), no row of the anomaly
    database, no flow run's parameters or logs on the Prefect server, and no alert body."""
    db_url, schema = secret_database
    port = receiver.server_address[1]
    alert_urls = (
        f"json://alice:{PASSWORD}@127.0.0.1:{port}/ok/{PASSWORD}?token={PASSWORD} "
        f"json://bob:{PASSWORD}@127.0.0.1:{port}/fail"  # answers 500: a failure is recorded
    )
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(_mlflow_template, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:  # trained with the secrets in the environment
        mp.setenv("AEMON_HOME", str(home))
        mp.setenv("AEMON_DATABASE_URL", db_url)
        mp.setenv("AEMON_ALERT_URLS", alert_urls)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        det = tiny_detector(reference)
        registry.log_training(
            det, name="metrics", data_source="test", drift_reference=drift.reference_profile(det, reference)
        )
    batch = tmp_path / "incidents.csv"
    make_series(600, 2, seed=7, start="2026-04-01", incidents=("spike", "level_shift"))[0].to_csv(
        batch, index=False
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,metric_0\n2026-01-01,oops\n")
    env = user_env(
        home, AEMON_DATABASE_URL=db_url, AEMON_ALERT_URLS=alert_urls, PREFECT_API_URL=prefect_harness
    )
    runs = [
        run_aemon("-v", "score", str(batch), "--model", "metrics", env=env),
        run_aemon("-v", "score", str(bad), "--model", "metrics", env=env),
        run_aemon("-v", "batches", env=env),
        run_aemon("-v", "anomalies", "--format", "json", env=env),
        run_aemon("-v", "reports", env=env),
        run_aemon("-v", "db", "upgrade", env=env),
        run_aemon("-v", "models", env=env),
    ]
    assert [r.returncode for r in runs] == [0, 1, 0, 0, 0, 0, 0], [r.stderr[-2000:] for r in runs]
    assert receiver.bodies, "the alert was not delivered: nothing was tested"
    store = AnomalyStore(db_url)
    try:
        assert store.alerts_to_retry(), "the failed delivery was not recorded: nothing was tested"
    finally:
        store.close()
    output = "\n".join(r.stdout + r.stderr for r in runs)
    assert "***" in output  # the URL is shown, without its password (db upgrade)
    places = {
        "command output": output,
        "anomaly database": database_text(postgres_admin_url, schema),
        "Prefect flow runs": prefect_logs_and_parameters(prefect_harness),
        "alert bodies": b"\n".join(receiver.bodies).decode(),
    }
    assert str(batch) in places["Prefect flow runs"]  # the score-batch run was there to be searched
    assert {where: PASSWORD in text for where, text in places.items()} == dict.fromkeys(places, False)
    assert files_holding(home, PASSWORD) == []
    assert any(home.rglob("report.html"))  # the reports were there to be searched


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://alice:{PASSWORD}@127.0.0.1:{free_port()}/aemon"
    res = run_aemon("batches", env=user_env(tmp_path, AEMON_DATABASE_URL=url))
    assert res.returncode == 1, res.stdout + res.stderr
    assert PASSWORD not in res.stdout + res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "alice:***@" in res.stderr, res.stderr


def test_quickstarts_where_to_look_shows_urls_without_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.tables import where_to_look

    monkeypatch.setenv("AEMON_DATABASE_URL", f"postgresql+psycopg://alice:{PASSWORD}@db.example/aemon")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://bob:{PASSWORD}@mlflow.example:5000")
    console = Console(record=True, width=300)
    console.print(where_to_look(Path("/tmp/demo")))
    text = console.export_text()
    assert PASSWORD not in text
    assert "alice:***@db.example" in text and "bob:***@mlflow.example" in text


# --- names and paths -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escaped", "..", "a/b", "a\\b", "x\x1b[31m", " padded"])
def test_a_model_name_that_could_leave_aemon_home_is_refused_at_once(name: str, tmp_path: Path) -> None:
    home = tmp_path / "deep" / "home"
    data = tmp_path / "reference.csv"
    make_series(200, 1, seed=2)[0].to_csv(data, index=False)
    res = run_aemon("train", str(data), "--name", name, env=user_env(home), timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    [line] = res.stderr.strip().splitlines()
    assert "invalid model name" in line and "\x1b" not in line, line
    assert {p.name for p in tmp_path.iterdir()} <= {"deep", "reference.csv"}  # nothing beside home
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()


def test_library_calls_refuse_such_names_too(reference: object, tmp_path: Path, aemon_home: Path) -> None:
    det = tiny_detector(reference)
    with pytest.raises(ConfigError, match="invalid model name"):
        registry.log_training(det, name="..", data_source="test")
    batch = tmp_path / "batch.csv"
    make_series(300, 2, seed=3)[0].to_csv(batch, index=False)
    with AnomalyStore() as store, pytest.raises(ConfigError, match="invalid model name"):
        score_batch_into_store(
            store, det, batch, model_name="../../out", model_version="1", error_map_root=tmp_path / "maps"
        )
    assert not (tmp_path / "out").exists()
    # an image key (a path inside a batch folder) names a file inside the folder it is given
    written = save_error_map(np.ones((4, 4), np.float32), tmp_path / "maps", "../../escape.png")
    assert written.parent == tmp_path / "maps"


# --- HTML: the review UI, and servers on 127.0.0.1 ------------------------------------------


@pytest.fixture
def ui_site(
    tmp_path: Path, _mlflow_template: Path, reference: object
) -> Iterator[tuple[str, int, dict[str, int]]]:
    """The real `aemon ui` (default host) over a database whose every user string is a script:
    a file name, a quarantine reason, column names, a feedback note and a model name."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(_mlflow_template, home / "mlflow.db")
    model = "<img src=x onerror=alert(1)>"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEMON_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("AEMON_DATABASE_URL", raising=False)
        registry.log_training(tiny_detector(reference), name=model, data_source=SCRIPT)
        with AnomalyStore() as store:
            done = store.claim_batch(
                source=f"/data/{SCRIPT[:-9]}.csv",
                content_sha256="a" * 64,
                model_name=model,
                model_version="1",
            )
            assert done is not None
            row = {
                "record_key": SCRIPT,
                "score": 3.0,
                "threshold": 1.0,
                "p_value": 0.01,
                "details": {"event_id": 1, "column_errors": {SCRIPT: 2.5, "cpu": 0.5}},
            }
            store.complete_batch(done.id, [row], n_records=10)
            [anomaly] = store.list_anomalies(batch_id=done.id)
            store.add_feedback(anomaly.id, "false_positive", note=SCRIPT)
            bad = store.claim_batch(
                source="/data/bad.csv", content_sha256="b" * 64, model_name=model, model_version="1"
            )
            assert bad is not None
            store.fail_batch(bad.id, f"/data/bad.csv: value columns ['{SCRIPT}'] not found", quarantined=True)
    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "ui", "--port", str(port)],
            env=user_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/batches", timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"aemon ui did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield url, port, {"done": done.id, "bad": bad.id, "anomaly": anomaly.id}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_every_user_string_reaches_the_ui_escaped_and_it_listens_on_localhost(
    ui_site: tuple[str, int, dict[str, int]],
) -> None:
    url, port, ids = ui_site
    pages = [
        "/batches",
        f"/batches/{ids['done']}",
        f"/batches/{ids['bad']}",
        f"/anomalies/{ids['anomaly']}",
        "/models",
    ]
    for page in pages:
        with urllib.request.urlopen(url + page, timeout=60) as resp:
            html = resp.read().decode()
        assert "<script>alert" not in html and "<img src=x" not in html, page
        assert "&lt;script&gt;alert(1)" in html or "&lt;img src=x" in html, page
    assert listening_addresses(port) == {"127.0.0.1"}


def test_the_prefect_server_aemon_starts_listens_on_localhost_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.server import prefect_api

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert config.prefect_api_url() is None
    port = free_port()
    with prefect_api(port) as api_url:
        assert api_url == f"http://127.0.0.1:{port}/api"
        assert listening_addresses(port) == {"127.0.0.1"}
    assert listening_addresses(port) == set()  # stopped
