"""The monitoring half of the command line, in subprocesses: quickstart end to end, score,
anomalies, feedback, db upgrade, and serve creating its scheduled deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aemon.store import AnomalyStore


def aemon(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def user_env(aemon_home: Path) -> dict[str, str]:
    """A user's environment: only AEMON_HOME set; Prefect with no server (temporary API)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(AEMON_HOME=str(aemon_home), COLUMNS="200", NO_COLOR="1")
    env.pop("MPLCONFIGDIR", None)
    return env


def test_quickstart_then_inspect_and_give_feedback(user_env: dict[str, str], aemon_home: Path) -> None:
    res = aemon("quickstart", env=user_env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "quickstart-ts" in res.stdout and "Quarantined 2026-02-05_malformed.csv" in res.stdout
    assert "Alerts received by the local webhook" in res.stdout
    store = AnomalyStore(f"sqlite:///{aemon_home / 'aemon.db'}")
    batches = {Path(b.source).name: b for b in store.list_batches()}
    assert batches["2026-01-22_clean.csv"].status == "done"
    assert batches["2026-01-29_incidents.csv"].status == "done"
    assert batches["2026-02-05_malformed.csv"].status == "quarantined"
    incidents = batches["2026-01-29_incidents.csv"]
    rows = store.list_anomalies(batch_id=incidents.id, limit=None)
    assert len(rows) == incidents.n_flagged > 0
    assert all(r.model_name == "quickstart-ts" and r.model_version == "1" for r in rows)
    drift_by_batch = {r.batch_id: r.drift_detected for r in store.list_drift_reports()}
    assert drift_by_batch[incidents.id] is True

    listed = aemon(
        "anomalies", "--batch", str(incidents.id), "--limit", "3", "--format", "json", env=user_env
    )
    assert listed.returncode == 0, listed.stderr
    top = json.loads(listed.stdout)
    assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    assert {"record_key", "score", "threshold", "p_value", "model_name", "model_version"} <= set(top[0])
    as_csv = aemon("anomalies", "--format", "csv", "--limit", "0", env=user_env)
    assert as_csv.stdout.count("\n") == len(store.list_anomalies(limit=None)) + 1

    fb = aemon(
        "feedback", str(top[0]["id"]), "--verdict", "false_positive", "--note", "maintenance", env=user_env
    )
    assert fb.returncode == 0, fb.stderr
    [row] = store.list_feedback(verdict="false_positive")
    assert row.anomaly_id == top[0]["id"] and row.note == "maintenance"
    assert aemon("feedback", "999999", "--verdict", "true_positive", env=user_env).returncode == 1
    assert aemon("feedback", "1", "--verdict", "maybe", env=user_env).returncode == 2

    # scoring a batch that is already done adds nothing
    done = aemon_home / "quickstart" / "timeseries" / "inbox" / "done" / "2026-01-29_incidents.csv"
    n_before = len(store.list_anomalies(limit=None))
    again = aemon("score", str(done), "--model", "quickstart-ts", env=user_env)
    assert again.returncode == 0, again.stderr
    assert "skipped" in again.stdout and len(store.list_anomalies(limit=None)) == n_before

    reports = aemon("reports", env=user_env)
    assert reports.returncode == 0 and "report.html" in reports.stdout


def test_db_upgrade_and_missing_inputs(user_env: dict[str, str], aemon_home: Path) -> None:
    res = aemon("db", "upgrade", env=user_env)
    assert res.returncode == 0 and "revision" in res.stdout
    assert (aemon_home / "aemon.db").exists()
    missing = aemon("score", str(aemon_home / "nope.csv"), "--model", "m", env=user_env)
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert aemon("serve", "--inbox", str(aemon_home), "--model", "m", env=user_env).returncode == 2


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [(["--every", "3600"], {"interval": 3600.0}), (["--cron", "*/5 * * * *"], {"cron": "*/5 * * * *"})],
)
def test_serve_creates_the_scheduled_deployment(
    schedule: list[str],
    expected: dict[str, object],
    prefect_harness: str,
    user_env: dict[str, str],
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client

    env = {**user_env, "PREFECT_API_URL": prefect_harness}
    model = f"m-{schedule[0].strip('-')}"  # a deployment name of its own per case
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--inbox", str(tmp_path), "--model", model, *schedule],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deployment = None
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while deployment is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    deployment = client.read_deployment_by_name(f"score-inbox/score-inbox-{model}")
                except Exception:
                    time.sleep(1)
        assert deployment is not None, proc.stderr.read() if proc.poll() is not None else "timeout"
        assert deployment.parameters == {"inbox": str(tmp_path.resolve()), "model": model}
        [sched] = deployment.schedules
        got = sched.schedule.model_dump()
        for key, value in expected.items():
            actual = got[key].total_seconds() if key == "interval" else got[key]
            assert actual == value
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, proc.stderr.read()
