"""Two workers (processes) run score-inbox on one inbox at once: each batch is scored once
(its rows, drift report and alert once), each file is filed once, and neither run fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import Webhook, bare_env, incident_batch

from aemon import registry
from aemon.batches import score_batch_into_store
from aemon.store import AnomalyStore

WORKER = """
import json, sys
from flows.score import score_inbox
print(json.dumps(score_inbox(sys.argv[1], sys.argv[2])))
"""
N_BATCHES = 4
REACH_POINT_S = 300.0
DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_two_workers_on_one_inbox_score_each_batch_once(
    db_url: str,
    model: str,
    model_store: str,
    webhook: Webhook,
    aemon_home: Path,
    tmp_path: Path,
    prefect_harness: str,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    paths = [incident_batch(inbox / f"b{i}.csv", n=600, seed=10 + i) for i in range(N_BATCHES)]
    detector, ref = registry.load_detector(model)
    expected = {}
    with AnomalyStore(f"sqlite:///{tmp_path / 'clean.db'}") as clean:
        for path in paths:
            out = score_batch_into_store(
                clean, detector, path, model_name=ref.name, model_version=ref.version
            )
            expected[out.content_sha256] = {a.record_key for a in clean.list_anomalies(batch_id=out.batch_id)}

    env = bare_env(
        aemon_home,
        MLFLOW_TRACKING_URI=model_store,
        AEMON_DATABASE_URL=db_url,
        AEMON_ALERT_URLS=webhook.url,
        PREFECT_API_URL=prefect_harness,
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(inbox), model],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [w.communicate(timeout=600) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err[-3000:]
    summaries = [s for out, _ in outputs for s in json.loads(out.strip().splitlines()[-1])]
    scored = sorted(Path(s["source"]).name for s in summaries if s["status"] == "done" and not s["resumed"])
    assert scored == sorted(p.name for p in paths), summaries  # each scored by one worker only

    with AnomalyStore(db_url) as store:
        batches = store.list_batches()
        assert len(batches) == N_BATCHES
        assert all(b.status == "done" and b.monitored_at is not None for b in batches)
        for b in batches:
            rows = {a.record_key for a in store.list_anomalies(batch_id=b.id, limit=None)}
            assert rows == expected[b.content_sha256]
        assert len(store.list_drift_reports(limit=None)) == N_BATCHES
    assert sorted(webhook.batches()) == sorted(b.id for b in batches)  # one alert each
    assert sorted(p.name for p in inbox.iterdir()) == ["done"]
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(p.name for p in paths)


@pytest.mark.parametrize("db_url", DATABASES, indirect=True)
def test_a_batch_held_by_a_live_worker_is_left_to_it_and_taken_over_once_it_is_killed(
    db_url: str,
    model: str,
    model_store: str,
    webhook: Webhook,
    aemon_home: Path,
    tmp_path: Path,
    prefect_harness: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Worker A claims the oldest batch and stops there (AEMON_FAULT_PAUSE); worker B runs
    meanwhile: it leaves A's batch alone (deferred, still in the inbox) and scores the rest.
    A is then killed with SIGKILL: the next run takes its batch over at once."""
    from flows.score import score_inbox

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    paths = [incident_batch(inbox / f"b{i}.csv", n=600, seed=20 + i) for i in range(3)]
    for age, path in enumerate(reversed(paths), start=1):  # b0 oldest: first in every listing
        os.utime(path, (time.time() - 60 * age, time.time() - 60 * age))
    settings = {
        "MLFLOW_TRACKING_URI": model_store,
        "AEMON_DATABASE_URL": db_url,
        "AEMON_ALERT_URLS": webhook.url,
        "PREFECT_API_URL": prefect_harness,
    }
    env = bare_env(aemon_home, **settings)
    log = tmp_path / "a.log"
    with log.open("w") as err:
        worker_a = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(inbox), model],
            env={**env, "AEMON_FAULT_PAUSE": "after-claim:600"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + REACH_POINT_S
        while "pausing at after-claim" not in log.read_text():
            assert worker_a.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        worker_b = subprocess.run(
            [sys.executable, "-c", WORKER, str(inbox), model],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert worker_b.returncode == 0, worker_b.stderr[-3000:]
        by_name = {Path(s["source"]).name: s for s in json.loads(worker_b.stdout.strip().splitlines()[-1])}
        assert by_name["b0.csv"]["status"] == "deferred", by_name["b0.csv"]
        assert "being scored by another run" in by_name["b0.csv"]["error"]
        assert {by_name[n]["status"] for n in ("b1.csv", "b2.csv")} == {"done"}
        assert sorted(p.name for p in inbox.iterdir()) == ["b0.csv", "done"]
    finally:
        os.kill(worker_a.pid, signal.SIGKILL)
        worker_a.wait(timeout=30)

    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    [taken_over] = score_inbox(str(inbox), model)
    assert taken_over["status"] == "done" and Path(taken_over["source"]).name == "b0.csv"
    with AnomalyStore(db_url) as store:
        batches = store.list_batches()
        assert len(batches) == 3 and all(b.status == "done" and b.monitored_at for b in batches)
    assert sorted(webhook.batches()) == sorted(b.id for b in batches)
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["b0.csv", "b1.csv", "b2.csv"]
