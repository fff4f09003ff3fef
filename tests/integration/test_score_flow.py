"""score-batch and score-inbox as real Prefect flow runs, against a real MLflow store, a real
SQLite database, real Evidently reports and a real local webhook for alerts."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aemon import Detector, ScoringError, drift, registry
from aemon.store import AnomalyStore
from aemon.synthetic import make_series

WEEK = 7 * 288


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return make_series(3 * WEEK, 2, seed=1)[0]


def _register(history: pd.DataFrame, name: str, **options: Any) -> str:
    """A small series detector trained on two weeks, registered as `name` (champion), with
    its drift profile."""
    reference = history.iloc[: 2 * WEEK]
    det = Detector(window=24, epochs=4, samples_per_epoch=2048, progress=False, **options).fit(reference)
    registry.log_training(
        det, name=name, data_source="test", drift_reference=drift.reference_profile(det, reference)
    )
    return name


@pytest.fixture(scope="module")
def _module_registry(
    history: pd.DataFrame, _mlflow_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The default detector (events within 1/week) trained and registered as `metrics` once
    for the module, in an MLflow store of the module's own; yields its tracking URI."""
    folder = tmp_path_factory.mktemp("score_flow_registry")
    shutil.copyfile(_mlflow_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AEMON_HOME", str(folder))  # artifacts go beside the store
        env.setenv("MLFLOW_TRACKING_URI", uri)
        _register(history, "metrics")
    yield uri


@pytest.fixture
def registered(_module_registry: str, prefect_harness: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """`metrics`, read from the module's registry; the database and reports are this test's."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _module_registry)
    return "metrics"


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AEMON_ALERT_URLS", f"json://127.0.0.1:{server.server_address[1]}/hook")
    yield received
    server.shutdown()
    server.server_close()


def test_score_inbox_scores_quarantines_reports_and_alerts(
    registered: str, history: pd.DataFrame, tmp_path: Path, webhook: list[dict[str, Any]]
) -> None:
    from flows.score import score_inbox

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    history.iloc[2 * WEEK :].to_csv(inbox / "a_clean.csv", index=False)
    shifted, _, _ = make_series(WEEK, 2, seed=5, incidents=("spike", "level_shift", "flatline"))
    shifted["metric_1"] += 3.0  # the whole batch moves: drift
    shifted.to_csv(inbox / "b_shifted.csv", index=False)
    (inbox / "c_bad.csv").write_text("timestamp,metric_0\n2026-01-01,oops\n")

    summaries = {Path(s["source"]).name: s for s in score_inbox(str(inbox), registered)}
    assert {k: v["status"] for k, v in summaries.items()} == {
        "a_clean.csv": "done",
        "b_shifted.csv": "done",
        "c_bad.csv": "quarantined",
    }
    # files moved, never deleted
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["a_clean.csv", "b_shifted.csv"]
    assert [p.name for p in (inbox / "quarantine").iterdir()] == ["c_bad.csv"]
    store = AnomalyStore()
    bad = store.get_batch(summaries["c_bad.csv"]["batch_id"])
    assert bad.status == "quarantined" and "metric_1" in (bad.error or "")
    # drift: one report per good batch, with the right verdicts
    reports = {r.batch_id: r for r in store.list_drift_reports()}
    clean_id, shifted_id = summaries["a_clean.csv"]["batch_id"], summaries["b_shifted.csv"]["batch_id"]
    assert not reports[clean_id].drift_detected and reports[shifted_id].drift_detected
    # Every batch keeps a small summary; only the drifted one gets Evidently's full report.
    for batch_id in (clean_id, shifted_id):
        assert Path(reports[batch_id].html_path).stat().st_size < 20_000
    summary = Path(reports[shifted_id].html_path)
    assert (summary.parent / "evidently.html").stat().st_size > 10_000
    assert "evidently.html" in summary.read_text()
    assert not (Path(reports[clean_id].html_path).parent / "evidently.html").exists()
    # flagged rows carry model, version, score, threshold and p-value
    rows = store.list_anomalies(batch_id=shifted_id, limit=None)
    assert len(rows) == summaries["b_shifted.csv"]["n_flagged"] > 0
    assert {(r.model_name, r.model_version) for r in rows} == {("metrics", "1")}
    assert all(r.score > r.threshold and r.p_value is not None for r in rows)
    # one alert per batch that deserves one
    alerted = sorted(body["aemon"]["batch_id"] for body in webhook)
    deserving = sorted(
        s["batch_id"]
        for s in summaries.values()
        if s["status"] == "done" and (s["n_flagged"] or s["drift_detected"])
    )
    assert alerted == deserving and shifted_id in alerted

    # a rerun of the same content changes nothing and sends nothing
    n_rows = len(store.list_anomalies(limit=None))
    (inbox / "again.csv").write_bytes((inbox / "done" / "b_shifted.csv").read_bytes())
    [again] = score_inbox(str(inbox), registered)
    assert again["status"] == "skipped"
    assert len(store.list_anomalies(limit=None)) == n_rows and len(webhook) == len(alerted)


def test_score_inbox_runs_its_batches_on_a_dask_cluster(
    registered: str, history: pd.DataFrame, tmp_path: Path
) -> None:
    from distributed import Client, LocalCluster, get_task_stream

    from flows.score import score_inbox

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(3):
        history.iloc[2 * WEEK + i * 100 :].to_csv(inbox / f"good_{i}.csv", index=False)
    (inbox / "bad.csv").write_text("timestamp,metric_0\n2026-01-01,oops\n")

    # Worker processes started now inherit this test's AEMON_HOME: same database and registry.
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):
        summaries = {
            Path(s["source"]).name: s
            for s in score_inbox(str(inbox), registered, dask=cluster.scheduler_address)
        }
    on_workers = [t for t in stream.data if "process_batch" in str(t["key"])]  # read on exit
    assert {k: v["status"] for k, v in summaries.items()} == {
        "good_0.csv": "done",
        "good_1.csv": "done",
        "good_2.csv": "done",
        "bad.csv": "quarantined",
    }
    assert len(on_workers) == 4  # every batch ran on the cluster, none in this process
    assert sorted(p.name for p in (inbox / "done").iterdir()) == ["good_0.csv", "good_1.csv", "good_2.csv"]
    assert [p.name for p in (inbox / "quarantine").iterdir()] == ["bad.csv"]
    store = AnomalyStore()
    assert {b.status for b in store.list_batches()} == {"done", "quarantined"}
    assert len(store.list_drift_reports()) == 3
    n_flagged = sum(s["n_flagged"] for s in summaries.values())
    assert len(store.list_anomalies(limit=None)) == n_flagged


def test_a_batch_that_fails_is_left_in_the_inbox_and_the_others_go_on(
    registered: str, history: pd.DataFrame, tmp_path: Path
) -> None:
    from flows.score import score_inbox

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # Listed, then unreadable. It points inside the inbox: a link out of it is quarantined.
    (inbox / "a_ghost.csv").symlink_to(inbox / ".gone.csv")
    history.iloc[2 * WEEK :].to_csv(inbox / "b_good.csv", index=False)
    with pytest.raises(ScoringError, match=r"1 of 2 batches failed: a_ghost.csv: .*batch not found"):
        score_inbox(str(inbox), registered)
    assert [p.name for p in (inbox / "done").iterdir()] == ["b_good.csv"]
    assert (inbox / "a_ghost.csv").is_symlink()  # left for the next run
    [batch] = AnomalyStore().list_batches()
    assert batch.status == "done" and batch.source.endswith("b_good.csv")


def test_score_batch_by_version_and_missing_model(
    registered: str, history: pd.DataFrame, tmp_path: Path
) -> None:
    from aemon import ModelNotFoundError
    from flows.score import score_batch

    path = tmp_path / "batch.csv"
    history.iloc[2 * WEEK :].to_csv(path, index=False)
    summary = score_batch(str(path), "metrics/1")
    assert summary["status"] == "done" and summary["model_version"] == "1"
    assert path.exists()  # score-batch leaves the file where it is
    with pytest.raises(ModelNotFoundError, match="nope"):
        score_batch(str(path), "nope")


@pytest.mark.usefixtures("mlflow_store", "prefect_harness")
def test_recalibrate_from_false_positive_feedback(history: pd.DataFrame, tmp_path: Path) -> None:
    from aemon import CalibrationError
    from flows.recalibrate import recalibrate
    from flows.score import score_batch

    # A pointwise 1 % threshold, so that a clean week has false positives to give feedback on.
    registered = _register(history, "pointwise", false_alarms=None)

    with pytest.raises(CalibrationError, match="no false-positive feedback"):
        recalibrate(registered)
    path = tmp_path / "week.csv"
    history.iloc[2 * WEEK :].to_csv(path, index=False)
    summary = score_batch(str(path), registered)
    store = AnomalyStore()
    flagged = store.list_anomalies(batch_id=summary["batch_id"], limit=None)
    assert flagged, "the clean week should have a few false positives at a 1 % FPR"
    for row in flagged:
        store.add_feedback(row.id, "false_positive")
    version = recalibrate(registered)
    assert version.version == "2" and version.threshold > max(r.score for r in flagged)
    assert version.threshold_method == "feedback" and "champion" in version.aliases
    # the new champion no longer flags what people called false positives
    again = score_batch(str(path), registered)
    assert again["model_version"] == "2" and again["n_flagged"] == 0
