"""SIGKILL of a real `aemon score` at named points of a batch (AEMON_FAULT_PAUSE makes it
wait there), then a re-run: exactly the rows of a clean run, the batch `done` once, its drift
report and alert done once (monitoring resumes when the kill came after the rows were
committed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import Webhook, aemon_command, bare_env, incident_batch

from aemon import registry
from aemon.batches import score_batch_into_store
from aemon.store import AnomalyStore

REACH_POINT_S = 300.0  # imports, loading the model and scoring, on a loaded 2-core machine

POSTGRES = pytest.mark.postgres
CASES = [
    pytest.param("sqlite", "after-claim", id="sqlite-before-the-write"),
    pytest.param("sqlite", "during-write", id="sqlite-during-the-write"),
    pytest.param("sqlite", "after-write", id="sqlite-after-the-write"),
    pytest.param("sqlite", "after-monitoring", id="sqlite-after-monitoring"),
    pytest.param("postgres", "during-write", id="postgres-during-the-write", marks=POSTGRES),
    pytest.param("postgres", "after-write", id="postgres-after-the-write", marks=POSTGRES),
]


def _expected_rows(model: str, path: Path, tmp_path: Path) -> set[tuple[str, float]]:
    """The flagged records of a clean run, into a database of their own."""
    detector, ref = registry.load_detector(model)
    with AnomalyStore(f"sqlite:///{tmp_path / 'clean.db'}") as clean:
        outcome = score_batch_into_store(
            clean, detector, path, model_name=ref.name, model_version=ref.version
        )
        assert outcome.status == "done" and outcome.n_flagged > 0
        return {(a.record_key, round(a.score, 9)) for a in clean.list_anomalies(limit=None)}


def _assert_one_clean_batch(db_url: str, expected: set[tuple[str, float]], webhook: Webhook) -> None:
    """One batch, done and monitored once: the clean run's rows, its drift report, one alert."""
    with AnomalyStore(db_url) as store:
        [batch] = store.list_batches()
        assert batch.status == "done" and batch.monitored_at is not None
        rows = {(a.record_key, round(a.score, 9)) for a in store.list_anomalies(limit=None)}
        assert rows == expected and batch.n_flagged == len(expected)
        report = store.drift_report_of(batch.id)
        assert report is not None and Path(report.html_path).exists()
    assert webhook.batches() == [batch.id]  # one alert, not two


def _kill_at(point: str, env: dict[str, str], path: Path, model: str, log: Path) -> None:
    """Start `aemon score`, wait until it says it paused at `point`, SIGKILL it."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            aemon_command("score", str(path), "--model", model),
            env={**env, "AEMON_FAULT_PAUSE": f"{point}:600"},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + REACH_POINT_S
        while f"pausing at {point}" not in log.read_text():
            assert proc.poll() is None, f"aemon score ended before {point}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"aemon score never reached {point}:\n{log.read_text()}"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.parametrize(("db_url", "point"), CASES, indirect=["db_url"])
def test_kill_9_then_a_rerun_leaves_exactly_the_clean_runs_rows_and_monitoring_done_once(
    db_url: str,
    point: str,
    model: str,
    model_store: str,
    webhook: Webhook,
    aemon_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: str,
) -> None:
    from flows.score import score_batch

    path = incident_batch(tmp_path / "incidents.csv")
    expected = _expected_rows(model, path, tmp_path)
    settings = {"MLFLOW_TRACKING_URI": model_store, "AEMON_DATABASE_URL": db_url}
    settings["AEMON_ALERT_URLS"] = webhook.url
    _kill_at(point, bare_env(aemon_home, **settings), path, model, tmp_path / "killed.log")

    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    rerun = score_batch(str(path), model)
    assert rerun["status"] == ("skipped" if point == "after-monitoring" else "done"), rerun
    assert rerun.get("resumed", False) == (point == "after-write")

    _assert_one_clean_batch(db_url, expected, webhook)


@pytest.mark.parametrize(
    # Three random moments: the named kill points are tested above (all four on SQLite, during
    # and after the write on PostgreSQL).
    ("db_url", "seed"),
    [pytest.param("postgres", s, marks=POSTGRES) for s in range(3)],
    indirect=["db_url"],
)
def test_kill_9_at_a_random_moment_then_a_rerun_leaves_exactly_the_clean_runs_rows(
    db_url: str,
    seed: int,
    model: str,
    model_store: str,
    webhook: Webhook,
    aemon_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    prefect_harness: str,
) -> None:
    """As a user would try it: SIGKILL at a moment drawn at random over the second half of a
    clean run's wall time (the first half is mostly imports), on PostgreSQL, then a re-run."""
    import random

    from flows.score import score_batch

    path = incident_batch(tmp_path / "incidents.csv")
    expected = _expected_rows(model, path, tmp_path)
    settings = {"MLFLOW_TRACKING_URI": model_store, "AEMON_ALERT_URLS": webhook.url}
    clean_env = bare_env(aemon_home, AEMON_DATABASE_URL=f"sqlite:///{tmp_path / 'timing.db'}", **settings)
    start = time.monotonic()
    subprocess.run(
        aemon_command("score", str(path), "--model", model),
        env=clean_env,
        check=True,
        capture_output=True,
        timeout=REACH_POINT_S,
    )
    wall = time.monotonic() - start
    webhook.received.clear()  # the timing run's alert is not the one under test

    delay = random.Random(seed).uniform(0.5 * wall, wall)
    proc = subprocess.Popen(
        aemon_command("score", str(path), "--model", model),
        env=bare_env(aemon_home, AEMON_DATABASE_URL=db_url, **settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.kill()
    proc.wait(timeout=30)
    with AnomalyStore(db_url) as store:  # where the kill landed, for the report
        killed_at = [(b.status, b.n_flagged, b.monitored_at is not None) for b in store.list_batches()]
    # Where the kill landed (seen with -s): [] = before the claim, running = mid-batch, ...
    sys.stderr.write(f"killed after {delay:.1f} s of {wall:.1f} s: {killed_at}\n")

    for key, value in {**settings, "AEMON_DATABASE_URL": db_url}.items():
        monkeypatch.setenv(key, value)
    score_batch(str(path), model)
    _assert_one_clean_batch(db_url, expected, webhook)
