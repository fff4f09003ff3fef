"""Reliability and safety of the scoring path, each case from issue 13 with real parts: a
SQLite file per test, one MLflow store with a small registered detector per module, real
Prefect flow runs, Evidently reports and `aemon` subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from aemon import ConfigError, Detector, ModelFormatError, StoreError, config, drift, registry
from aemon.store import AnomalyStore
from aemon.synthetic import make_series

BAD = "timestamp,metric_0\n2026-01-01,oops\n"  # a column missing: quarantined
ESC = "\x1b[31m"  # a terminal escape sequence (red)


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    return make_series(2_600, 2, seed=1)[0]


@pytest.fixture(scope="module")
def model_store(
    series: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
    _mlflow_template: Path,
    prefect_harness: str,
) -> str:
    """An MLflow store holding `metrics` (champion), with its drift reference profile."""
    home = tmp_path_factory.mktemp("reliability_models")
    shutil.copyfile(_mlflow_template, home / "mlflow.db")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEMON_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        reference = series.iloc[:2_000]
        det = Detector(window=16, epochs=2, samples_per_epoch=1024, progress=False).fit(reference)
        registry.log_training(
            det, name="metrics", data_source="test", drift_reference=drift.reference_profile(det, reference)
        )
    return uri


@pytest.fixture
def model(model_store: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The module's registered model; database and reports stay in this test's AEMON_HOME."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", model_store)
    return "metrics"


@pytest.fixture
def good_csv(series: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "good.csv"
    series.iloc[2_000:].to_csv(path, index=False)
    return path


def cli_env(aemon_home: Path, prefect_api_url: str, tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update(
        AEMON_HOME=str(aemon_home),
        PREFECT_API_URL=prefect_api_url,
        MLFLOW_TRACKING_URI=tracking_uri,
        COLUMNS="200",
        NO_COLOR="1",
    )
    return env


def run_aemon(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=False,
    )


# --- quarantine is for good -----------------------------------------------------------------


def test_quarantined_content_and_links_out_of_the_inbox_never_come_back_as_done(
    model: str, tmp_path: Path
) -> None:
    from flows.score import score_batch, score_inbox

    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:the-secret-line:/root:/bin/bash\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "bad.csv").write_text(BAD)
    (inbox / "link.csv").symlink_to(secret)

    first = {Path(s["source"]).name: s for s in score_inbox(str(inbox), model)}
    assert {k: v["status"] for k, v in first.items()} == {"bad.csv": "quarantined", "link.csv": "quarantined"}
    assert "outside the inbox: not read" in first["link.csv"]["error"]

    # The same bad content under a new name, and a second link to the same place.
    (inbox / "bad again.csv").write_text(BAD)
    (inbox / "link2.csv").symlink_to(secret)
    second = {Path(s["source"]).name: s for s in score_inbox(str(inbox), model)}
    assert {k: v["status"] for k, v in second.items()} == {
        "bad again.csv": "quarantined",
        "link2.csv": "quarantined",
    }
    assert second["bad again.csv"]["batch_id"] == first["bad.csv"]["batch_id"]
    assert "quarantined before" in second["bad again.csv"]["error"]
    assert not (inbox / "done").exists()
    assert sorted(p.name for p in (inbox / "quarantine").iterdir()) == [
        "bad again.csv",
        "bad.csv",
        "link.csv",
        "link2.csv",
    ]
    assert (inbox / "quarantine" / "link2.csv").is_symlink()  # the link moved, the target untouched
    assert secret.read_text().startswith("root:x")

    # score-batch (aemon score) on content quarantined before: quarantined, not skipped
    again = score_batch(str(inbox / "quarantine" / "bad again.csv"), model)
    assert again["status"] == "quarantined" and "quarantined before" in again["error"]

    batches = AnomalyStore().list_batches()
    assert len(batches) == 2 and {b.status for b in batches} == {"quarantined"}
    assert not any("the-secret-line" in (b.error or "") for b in batches)


# --- the inbox -------------------------------------------------------------------------------


@pytest.mark.parametrize("inbox", ["", "  ", "inbox", "./"])
def test_an_empty_or_relative_inbox_is_refused_and_nothing_moves(
    inbox: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: str
) -> None:
    from flows.score import score_inbox

    monkeypatch.chdir(tmp_path)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "Makefile").write_text("all:\n")
    with pytest.raises(ConfigError, match="inbox"):
        score_inbox(inbox, "metrics")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile", "inbox"]


# --- what reaches the ledger, the terminal and the reports -----------------------------------


def test_escape_sequences_from_a_bad_file_never_reach_the_ledger_or_the_terminal(
    model: str, model_store: str, prefect_harness: str, aemon_home: Path, tmp_path: Path
) -> None:
    from flows.score import score_batch

    content = f"timestamp,metric_0,metric_1\n2026-01-01,1,2\n{ESC}HELLO\x07,3,4,5,6\n"
    first = tmp_path / "evil.csv"
    first.write_text(content)
    summary = score_batch(str(first), model)
    assert summary["status"] == "quarantined"
    stored = AnomalyStore().get_batch(summary["batch_id"]).error or ""
    assert "\x1b" not in stored and "\x07" not in stored and "\\x1b" in stored

    # The same content under a name with an escape sequence, through the command line.
    copy = tmp_path / f"copy{ESC}.csv"
    copy.write_text(content)
    env = cli_env(aemon_home, prefect_harness, model_store)
    res = run_aemon("score", str(copy), "--model", model, env=env)
    assert res.returncode == 1, res.stderr
    assert "quarantined before" in res.stdout  # aemon score prints the reason with the batch
    assert "\x1b" not in res.stdout + res.stderr and "Traceback" not in res.stderr


def test_a_column_named_like_a_script_is_not_live_in_the_drift_report(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    reference = pd.DataFrame({evil: [0.0, 1.0, 2.0, 3.0] * 50, "score": [0.1, 0.2] * 100})
    current = reference + 5.0
    result = drift.drift_report(reference, current, tmp_path / "report")
    assert result.evidently_path is not None  # the full report, and the summary: neither runs it
    for html in (result.html_path.read_text(), result.evidently_path.read_text()):
        assert "<script>alert" not in html and "alert(1)</script>" not in html
    assert set(result.columns) == {evil, "score"} and result.columns[evil]["group"] == "input"
    assert result.columns[evil]["drifted"]


def test_anomalies_json_stays_valid_with_an_infinite_score(aemon_home: Path) -> None:
    store = AnomalyStore()
    batch = store.claim_batch(source="x.csv", content_sha256="a" * 64, model_name="m", model_version="1")
    assert batch is not None
    rows = [{"record_key": "row:1", "score": float("inf"), "threshold": 0.5, "p_value": 0.001}]
    store.complete_batch(batch.id, rows, n_records=10)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    res = run_aemon("anomalies", "--format", "json", env={**env, "AEMON_HOME": str(aemon_home)})
    assert res.returncode == 0, res.stderr

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    [record] = json.loads(res.stdout, parse_constant=refuse)
    assert record["score"] is None and record["threshold"] == 0.5


# --- failures are visible --------------------------------------------------------------------


def test_an_unwritable_reports_folder_is_reported_once_and_the_batch_is_kept(
    model: str, model_store: str, prefect_harness: str, aemon_home: Path, good_csv: Path
) -> None:
    (aemon_home / "reports").write_text("not a folder")  # as unwritable as it gets, even for root
    res = run_aemon(
        "score", str(good_csv), "--model", model, env=cli_env(aemon_home, prefect_harness, model_store)
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("warning: no drift report") == 1, res.stderr
    assert "see warning" in res.stdout
    [batch] = AnomalyStore().list_batches()
    assert batch.status == "done" and batch.n_records == len(pd.read_csv(good_csv))


def test_a_tampered_detector_is_one_model_format_error(
    series: pd.DataFrame, mlflow_store: str, aemon_home: Path
) -> None:
    det = Detector(window=8, epochs=1, samples_per_epoch=256, progress=False).fit(series.iloc[:400])
    registry.log_training(det, name="tampered", data_source="test")
    weights = list((aemon_home / "mlartifacts").rglob("weights.pt"))
    assert weights
    for path in weights:
        path.write_bytes(b"\x80\x02not a state dict" * 20)
    with pytest.raises(ModelFormatError, match=r"tampered/1 .*: the registered detector cannot be loaded"):
        registry.load_detector("tampered")


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://user:s3cret@127.0.0.1:notaport/db", "sqlite+nothing:///x.db", "nonsense"],
)
def test_a_malformed_database_url_is_one_store_error(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        AnomalyStore(url)
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)


# --- one report per batch, one artifact folder per batch ------------------------------------


def test_two_databases_sharing_one_home_keep_both_reports_and_mlflow_gets_none(
    model: str, series: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch 1 of two databases gets two report folders (told apart by content hash), and no
    per-batch report is copied into the model's MLflow run (10 MB a batch, issue 12)."""
    from mlflow import MlflowClient

    from flows.score import score_batch

    ids, reports = set(), set()
    for name, start in (("a", 2_000), ("b", 2_100)):
        monkeypatch.setenv("AEMON_DATABASE_URL", f"sqlite:///{tmp_path / name / 'aemon.db'}")
        path = tmp_path / f"{name}.csv"
        series.iloc[start:].to_csv(path, index=False)
        summary = score_batch(str(path), model)
        assert summary["status"] == "done" and Path(summary["report_path"]).exists()
        ids.add(summary["batch_id"])
        reports.add(Path(summary["report_path"]).parent)
    assert ids == {1} and len(reports) == 2  # each database numbers its batches from 1
    ref = registry.resolve_ref(model)
    client = MlflowClient(config.mlflow_tracking_uri())
    run_id = ref.run_id or client.get_model_version(ref.name, ref.version).run_id
    assert client.list_artifacts(run_id, "monitoring") == []


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_aemon_score_opens_the_batch_file_once(
    model: str, good_csv: Path, aemon_home: Path, prefect_harness: str, model_store: str, tmp_path: Path
) -> None:
    """One read per batch, seen from the system calls: hash, records, drift profile, plot and
    rows all come from one open of the file."""
    trace = tmp_path / "trace.txt"
    strace = ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(trace)]
    res = subprocess.run(
        [*strace, sys.executable, "-m", "flows.cli", "score", str(good_csv), "--model", model],
        env=cli_env(aemon_home, prefect_harness, model_store),
        text=True,
        capture_output=True,
        timeout=400,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 batch" in res.stdout or "done" in res.stdout, res.stdout
    opened = [line for line in trace.read_text().splitlines() if f'"{good_csv}"' in line]
    assert len(opened) == 1, opened
