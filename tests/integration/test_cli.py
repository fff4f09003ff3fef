"""The `aemon` command line end to end, in subprocesses: exit codes, train and models, and the
monitoring commands (quickstart, score, anomalies, feedback, reports, db upgrade, serve).

One training run has no configuration at all (no Prefect server, so the flow's code runs
directly, as a user gets it); the other points PREFECT_API_URL at the session's test server,
the path a deployment with a real server takes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import poisson

from aemon.calibration import parse_rate
from aemon.detector import DEFAULT_FALSE_ALARMS
from aemon.store import AnomalyStore
from aemon.synthetic import INCIDENT_KINDS, make_images, make_series


def run_aemon(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli_env(aemon_home: Path, mlflow_store: str) -> dict[str, str]:
    """The user's view: only AEMON_HOME is set; the CLI derives Prefect and MLflow settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_")) and k != "MPLCONFIGDIR"
    }
    env.update(AEMON_HOME=str(aemon_home), COLUMNS="200", NO_COLOR="1")
    return env


def test_train_a_series_with_no_configuration_then_list_models(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    frame, labels, _ = make_series(1500, 2, incidents=("spike", "flatline", "spike", "level_shift"))
    frame.to_csv(tmp_path / "reference.csv", index=False)
    pd.DataFrame({"label": labels.astype(int)}).to_csv(tmp_path / "labels.csv", index=False)

    res = run_aemon(
        "train",
        str(tmp_path / "reference.csv"),
        "--name",
        "cpu",
        "--window",
        "16",
        "--epochs",
        "2",
        "--labels",
        str(tmp_path / "labels.csv"),
        env=cli_env,
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for text in (
        "Registered cpu/1",
        "challenger, champion",
        "first champion",
        "(event_budget)",
        "calibration FPR",
        "false-alarm budget",
        "at most 1/week on normal data",
        "calendar inputs",
        "phase of the day",
        "held-out AUROC",
        "MLflow run",
        cli_env["AEMON_HOME"],
    ):
        assert text in out, out
    assert "Traceback" not in res.stderr and "INFO" not in res.stderr  # quiet by default

    res = run_aemon("models", env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "cpu" in res.stdout and "challenger, champion" in res.stdout
    assert "promoted" in res.stdout


def test_train_an_image_folder_against_a_prefect_server(
    tmp_path: Path, cli_env: dict[str, str], prefect_harness: str
) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(make_images(120, size=16)[0]):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    env = {**cli_env, "PREFECT_API_URL": prefect_harness}
    res = run_aemon("train", str(folder), "--name", "rings", "--model", "dense", "--epochs", "2", env=env)
    assert res.returncode == 0, res.stderr
    assert "Registered rings/1" in res.stdout and "held-out FPR" in res.stdout


def run_in_pty(*args: str, env: dict[str, str], timeout: float = 400) -> tuple[int, str]:
    """`aemon ARGS` on a pseudo-terminal, as a user at a terminal runs it: (exit code, output).
    Python's pty reports a size of 0 x 0, as bare ptys and some container consoles do."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: never returns
        os.execve(sys.executable, [sys.executable, "-m", "flows.cli", *args], env)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([fd], [], [], 1.0)[0]:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def test_train_shows_its_progress_bar_on_a_terminal(tmp_path: Path, cli_env: dict[str, str]) -> None:
    frame, _, _ = make_series(600, 2, seed=5)
    frame.to_csv(tmp_path / "reference.csv", index=False)
    args = ("train", str(tmp_path / "reference.csv"), "--name", "tiny", "--window", "8", "--epochs", "3")
    code, out = run_in_pty(*args, env={k: v for k, v in cli_env.items() if k != "COLUMNS"})
    assert code == 0, out
    assert "training:" in out and "epoch/s" in out, out  # tqdm's bar, drawn on the terminal
    assert "Registered tiny/1" in out


@pytest.mark.parametrize(
    "args",
    [
        ("train", "x.csv", "--name", "a", "--threshold", "median"),  # not a method
        ("train", "x.csv"),  # --name missing
        ("train", "x.csv", "--name", "a", "--epochs", "many"),
        ("frobnicate",),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], cli_env: dict[str, str]) -> None:
    assert run_aemon(*args, env=cli_env).returncode == 2


def test_a_missing_file_exits_1_with_one_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    res = run_aemon("train", str(tmp_path / "nope.csv"), "--name", "a", env=cli_env)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.csv'}: data not found"]


def test_every_command_has_help(cli_env: dict[str, str]) -> None:
    commands = (
        "train",
        "models",
        "score",
        "serve",
        "anomalies",
        "feedback",
        "recalibrate",
        "reports",
        "quickstart",
        "db",
        "db upgrade",
        "benchmark",
        "batches",
    )
    for args in ((), *(c.split() for c in commands)):
        res = run_aemon(*args, "--help", env=cli_env)
        assert res.returncode == 0 and "Usage" in res.stdout, (args, res.stderr)
        assert "<bool>" not in res.stdout, (args, res.stdout)  # on/off flags take no value
    assert "--labels" in run_aemon("train", "--help", env=cli_env).stdout


# --- monitoring: quickstart, score, anomalies, feedback, reports, db, serve ---------------------


def test_quickstart_then_inspect_and_give_feedback(cli_env: dict[str, str], aemon_home: Path) -> None:
    res = run_aemon("quickstart", env=cli_env)
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

    listed = run_aemon(
        "anomalies", "--batch", str(incidents.id), "--limit", "3", "--format", "json", env=cli_env
    )
    assert listed.returncode == 0, listed.stderr
    top = json.loads(listed.stdout)
    assert len(top) == 3 and top[0]["score"] >= top[1]["score"] >= top[2]["score"]
    assert {"record_key", "score", "threshold", "p_value", "model_name", "model_version"} <= set(top[0])
    as_csv = run_aemon("anomalies", "--format", "csv", "--limit", "0", env=cli_env)
    assert as_csv.stdout.count("\n") == len(store.list_anomalies(limit=None)) + 1
    # The same flagged points as alarms: every one in exactly one event, each with its columns.
    alarms = json.loads(run_aemon("events", "--batch", str(incidents.id), "-f", "json", env=cli_env).stdout)
    assert alarms and sum(a["points"] for a in alarms) == incidents.n_flagged
    assert all(a["start"] <= a["end"] and abs(sum(a["contributions"].values()) - 1) < 0.01 for a in alarms)
    assert "Alarms" in run_aemon("events", env=cli_env).stdout

    fb = run_aemon(
        "feedback", str(top[0]["id"]), "--verdict", "false_positive", "--note", "maintenance", env=cli_env
    )
    assert fb.returncode == 0, fb.stderr
    [row] = store.list_feedback(verdict="false_positive")
    assert row.anomaly_id == top[0]["id"] and row.note == "maintenance"
    redo = run_aemon("feedback", str(top[0]["id"]), "--verdict", "true_positive", env=cli_env)
    assert redo.returncode == 0 and "replaces the earlier verdict false_positive" in redo.stdout
    assert [f.verdict for f in store.list_feedback()] == ["true_positive"]  # one verdict per anomaly
    assert run_aemon("feedback", "999999", "--verdict", "true_positive", env=cli_env).returncode == 1
    assert run_aemon("feedback", "1", "--verdict", "maybe", env=cli_env).returncode == 2

    # scoring a batch that is already done adds nothing
    done = aemon_home / "quickstart" / "timeseries" / "inbox" / "done" / "2026-01-29_incidents.csv"
    n_before = len(store.list_anomalies(limit=None))
    again = run_aemon("score", str(done), "--model", "quickstart-ts", env=cli_env)
    assert again.returncode == 0, again.stderr
    assert "skipped" in again.stdout and len(store.list_anomalies(limit=None)) == n_before

    reports = run_aemon("reports", env=cli_env)
    assert reports.returncode == 0 and "report.html" in reports.stdout


def test_db_upgrade_and_missing_inputs(cli_env: dict[str, str], aemon_home: Path) -> None:
    res = run_aemon("db", "upgrade", env=cli_env)
    assert res.returncode == 0 and "revision" in res.stdout
    assert (aemon_home / "aemon.db").exists()
    missing = run_aemon("score", str(aemon_home / "nope.csv"), "--model", "m", env=cli_env)
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert run_aemon("serve", "--inbox", str(aemon_home), "--model", "m", env=cli_env).returncode == 2


# A background job of a non-interactive shell (CI) starts with SIGINT ignored, and Python then
# never turns Ctrl-C into KeyboardInterrupt: the child re-installs the handler, as a terminal
# would have it. SIGTERM is what service managers send to stop a server.
_CLI_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'aemon'; runpy.run_module('flows.cli', run_name='__main__')"
)


@contextmanager
def _serving(
    tmp_path: Path, env: dict[str, str], model: str, *options: str, stop: signal.Signals
) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """`aemon serve` on a new inbox as a child process; on exit it is sent `stop` and must end
    within 60 s. Yields the process, the inbox and its output file (a file, not a pipe: a pipe
    nobody reads fills up with the runner's logs and blocks the server, which then cannot
    handle Ctrl-C)."""
    log = tmp_path / "serve.log"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _CLI_WITH_CTRL_C, "serve", "--inbox", str(inbox), "-m", model, *options],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield proc, inbox, log
        finally:
            proc.send_signal(stop)
            try:
                # Stopping also cancels a scheduled run the runner may have started meanwhile.
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                pytest.fail(f"serve did not stop within 60 s of {stop.name}; its output:\n{log.read_text()}")


@pytest.mark.parametrize(
    ("schedule", "expected", "stop"),
    [
        (["--every", "3600", "--dask", "tcp://127.0.0.1:8786"], {"interval": 3600.0}, signal.SIGINT),
        (["--cron", "*/5 * * * *"], {"cron": "*/5 * * * *"}, signal.SIGTERM),
    ],
)
def test_serve_creates_the_scheduled_deployment(
    schedule: list[str],
    expected: dict[str, object],
    stop: signal.Signals,
    prefect_harness: str,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    from prefect.client.orchestration import get_client

    env = {**cli_env, "PREFECT_API_URL": prefect_harness}
    model = f"m-{schedule[0].strip('-')}"  # a deployment name of its own per case
    with _serving(tmp_path, env, model, *schedule, stop=stop) as (proc, inbox, log):
        deployment = None
        deadline = time.monotonic() + 120
        with get_client(sync_client=True) as client:
            while deployment is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    deployment = client.read_deployment_by_name(f"score-inbox/score-inbox-{model}")
                except Exception:
                    time.sleep(1)
        assert deployment is not None, log.read_text() if proc.poll() is not None else "timeout"
        dask = schedule[schedule.index("--dask") + 1] if "--dask" in schedule else None
        assert deployment.parameters == {"inbox": str(inbox.resolve()), "model": model, "dask": dask}
        [sched] = deployment.schedules
        got = sched.schedule.model_dump()
        for key, value in expected.items():
            actual = got[key].total_seconds() if key == "interval" else got[key]
            assert actual == value
    assert proc.returncode == 0, log.read_text()


def test_serve_stops_cleanly_on_sigterm_while_it_starts(
    prefect_harness: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # SIGTERM as soon as serve says it is serving, before Prefect's runner has its own handler.
    env = {**cli_env, "PREFECT_API_URL": prefect_harness}
    with _serving(tmp_path, env, "early", "--every", "60", stop=signal.SIGTERM) as (proc, _, log):
        deadline = time.monotonic() + 120
        while "Serving" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert proc.returncode == 0, log.read_text()
    assert "Stopped." in log.read_text()


# The default path as a new user takes it, as a known-answer test: `aemon train` and `aemon
# score` with no options on two weeks of 1-minute metrics (five seasonal columns, two
# near-constant ones) with ten incidents of five kinds. Every incident must become an alarm
# (an event), and false alarms must stay within what the default budget allows.
TWO_WEEKS = 14 * 1440


@pytest.mark.timeout(1800)  # trains 60 epochs through the CLI: minutes on a loaded 2-core machine
def test_no_options_find_every_incident_within_the_false_alarm_budget(
    tmp_path: Path,
    cli_env: dict[str, str],
) -> None:
    shape = {"freq": "1min", "period": 1440, "flat_columns": 2}
    reference, _, _ = make_series(TWO_WEEKS, 5, seed=300, **shape)
    batch, _, incidents = make_series(
        TWO_WEEKS, 5, seed=400, start="2026-01-15", incidents=INCIDENT_KINDS * 2, **shape
    )
    reference.to_csv(tmp_path / "reference.csv", index=False)
    batch.to_csv(tmp_path / "batch.csv", index=False)

    res = run_aemon("train", str(tmp_path / "reference.csv"), "--name", "metrics", env=cli_env, timeout=900)
    assert res.returncode == 0, res.stderr
    assert "event_budget" in res.stdout, res.stdout
    res = run_aemon("score", str(tmp_path / "batch.csv"), "--model", "metrics", env=cli_env)
    assert res.returncode == 0, res.stderr
    res = run_aemon("anomalies", "--limit", "0", "--format", "json", env=cli_env)
    assert res.returncode == 0, res.stderr

    # Flagged rows carry their event number: an event spans its rows' first to last time.
    rows = pd.DataFrame(json.loads(res.stdout))
    stamps = pd.to_datetime(rows.timestamp, utc=True).dt.tz_localize(None).to_numpy()
    rows["row"] = np.searchsorted(batch.timestamp.to_numpy(), stamps)
    rows["event"] = rows.details.map(lambda d: d["event_id"])
    events = rows.groupby("event").row.agg(["min", "max"]).to_numpy()

    missed = [i.kind for i in incidents if not ((events[:, 0] <= i.end) & (events[:, 1] >= i.start)).any()]
    assert not missed, f"incidents without an alarm: {missed}; events {events.tolist()}"
    false = [(a, b) for a, b in events if not any(a <= i.end and i.start <= b for i in incidents)]
    count, period = parse_rate(DEFAULT_FALSE_ALARMS)
    span = pd.Timedelta(batch.timestamp.iloc[-1] - batch.timestamp.iloc[0])
    promised = count * (span / period)
    # One batch is one draw: fail when that many false events would be rare (p < 1 %) if the
    # rate were the budget (the promise itself is tested across seeds in test_event_promise).
    assert poisson.sf(len(false) - 1, promised) >= 0.01, (len(false), promised, false)
    assert np.isfinite(rows.score).all()


# --- what the CLI says: batches, score reasons, serve lines, one-off scoring --------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, pd.DataFrame, Path]:
    """A small series detector fitted once per module on quickstart-shaped data (timestamp,
    metric_0..2), its drift reference profile, and the reference CSV it was fitted on."""
    from aemon import drift
    from aemon.detector import Detector

    frame, _, _ = make_series(3 * 288 * 7, 3, seed=21)
    path = tmp_path_factory.mktemp("tiny_model") / "reference.csv"
    frame.to_csv(path, index=False)
    detector = Detector(modality="timeseries", window=16, epochs=2, progress=False).fit(frame)
    return detector, drift.reference_profile(detector, frame), path


def _register(
    home: Path, template: Path, model: tuple[Any, pd.DataFrame, Path], name: str, source: str
) -> None:
    """Register `model` as `name` (champion) in the MLflow store of AEMON_HOME `home`."""
    import shutil

    from aemon import registry

    if not (home / "mlflow.db").exists():
        shutil.copyfile(template, home / "mlflow.db")
    detector, profile, _ = model
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEMON_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        registry.log_training(detector, name=name, data_source=source, drift_reference=profile)


def _user_env(home: Path) -> dict[str, str]:
    """A user's environment with AEMON_HOME only, and no COLUMNS: output is piped, as to grep."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MLFLOW_", "AEMON_")) and k not in ("MPLCONFIGDIR", "COLUMNS")
    }
    env.update(AEMON_HOME=str(home), NO_COLOR="1")
    return env


@pytest.fixture(scope="module")
def scoring_home(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model: tuple[Any, pd.DataFrame, Path],
    _mlflow_template: Path,
) -> tuple[Path, dict[str, str]]:
    """An AEMON_HOME whose registry holds `metrics` (the tiny model, champion); and its env."""
    home = tmp_path_factory.mktemp("scoring_home")
    _register(home, _mlflow_template, tiny_model, "metrics", str(tiny_model[2]))
    return home, _user_env(home)


def _bad_batches(folder: Path, seed: int = 31) -> dict[str, Path]:
    """Batches that must be quarantined, each for a reason of its own (content of their own
    per seed: a batch is one content, so the same bytes twice would be one batch)."""
    good, _, _ = make_series(300, 3, seed=seed, start="2026-03-01")
    folder.mkdir(parents=True, exist_ok=True)
    bad = {name: folder / f"{name}.csv" for name in ("missing_column", "nan", "no_rows", "bad_times")}
    good.drop(columns=["metric_1"]).to_csv(bad["missing_column"], index=False)
    with_nan = good.copy()
    with_nan.loc[10, "metric_2"] = np.nan
    with_nan.to_csv(bad["nan"], index=False)
    good.head(0).to_csv(bad["no_rows"], index=False)
    bad_times = good.astype({"timestamp": str})
    bad_times.loc[5, "timestamp"] = "yesterday at noon"
    bad_times.to_csv(bad["bad_times"], index=False)
    return bad


def test_score_says_why_and_batches_lists_every_reason(
    scoring_home: tuple[Path, dict[str, str]], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home, env = scoring_home
    db = AnomalyStore(f"sqlite:///{home / 'aemon.db'}")
    request.addfinalizer(db.close)
    bad = _bad_batches(tmp_path / "bad")
    reasons = {}
    for name, path in bad.items():
        res = run_aemon("score", str(path), "--model", "metrics", env=env)
        assert res.returncode == 1, (name, res.stdout, res.stderr)
        [batch] = [b for b in db.list_batches(limit=None) if b.source == str(path)]
        assert batch.status == "quarantined" and batch.error
        reasons[name] = batch.error
        # The reason in full on one line of stdout (piped: never wrapped), the path named once;
        # nothing on stderr (it used to log the path twice there, and say "see below").
        assert f"quarantined {path.name} (batch {batch.id}): {batch.error}" in res.stdout.splitlines()
        assert batch.error.count(str(path)) == 1 and res.stderr == "", (res.stdout, res.stderr)
    assert len(set(reasons.values())) == len(bad)  # four different problems, four reasons

    # The same bad bytes under another name: quarantined again, naming the first batch.
    again = tmp_path / "again.csv"
    again.write_bytes(bad["nan"].read_bytes())
    res = run_aemon("score", str(again), "--model", "metrics", env=env)
    assert res.returncode == 1 and "this content was quarantined before" in res.stdout, res.stdout

    # A good batch scored twice: the second time says it was skipped, and why.
    good = tmp_path / "good.csv"
    make_series(300, 3, seed=32, start="2026-03-02")[0].to_csv(good, index=False)
    assert run_aemon("score", str(good), "--model", "metrics", env=env).returncode == 0
    res = run_aemon("score", str(good), "--model", "metrics", env=env)
    assert res.returncode == 0, res.stderr
    assert "this content was already scored by metrics/1; nothing changed" in res.stdout, res.stdout

    listed = run_aemon("batches", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    for batch in db.list_batches(limit=None):
        # one line per batch, with its source and its whole reason
        assert [line for line in lines if f" {batch.source} " in line and (batch.error or "") in line], batch
    as_json = json.loads(run_aemon("batches", "--status", "quarantined", "--format", "json", env=env).stdout)
    assert {b["error"] for b in as_json} == {b.error for b in db.list_batches(status="quarantined")}
    # the same bytes again are the same batch (one per content and model): four rows
    assert set(reasons.values()) == {b["error"] for b in as_json} and len(as_json) == len(bad)
    import csv

    rows = list(
        csv.DictReader(run_aemon("batches", "--format", "csv", "--limit", "0", env=env).stdout.splitlines())
    )
    assert len(rows) == len(db.list_batches(limit=None)) and rows[0]["status"] == "done"
    assert "No batches." in run_aemon("batches", "--model", "other", env=env).stdout
    assert run_aemon("batches", "--status", "lost", env=env).returncode == 2

    # --open on a machine without a browser (no display, no console browser on PATH)
    headless = {k: v for k, v in env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    headless["PATH"] = str(Path(sys.executable).parent)
    opened = run_aemon("reports", "--open", env=headless)
    assert opened.returncode == 0, opened.stderr
    assert "No web browser found" in opened.stderr
    newest = db.list_drift_reports(limit=1)[0]
    assert opened.stdout.splitlines()[-1] == str(Path(newest.html_path).resolve())


def test_one_off_scoring_without_a_server_writes_what_the_flow_writes(
    scoring_home: tuple[Path, dict[str, str]], prefect_harness: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    _, env = scoring_home
    batch = tmp_path / "batch.csv"
    make_series(300, 3, seed=33, start="2026-03-03", incidents=("spike", "level_shift"))[0].to_csv(
        batch, index=False
    )
    urls = {how: f"sqlite:///{tmp_path / how / 'aemon.db'}" for how in ("direct", "flow")}
    direct = run_aemon(
        "-v", "score", str(batch), "-m", "metrics", env={**env, "AEMON_DATABASE_URL": urls["direct"]}
    )
    assert direct.returncode == 0, direct.stderr
    assert "directly, without Prefect" in direct.stderr
    flow_env = {**env, "AEMON_DATABASE_URL": urls["flow"], "PREFECT_API_URL": prefect_harness}
    through = run_aemon("-v", "score", str(batch), "-m", "metrics", env=flow_env)
    assert through.returncode == 0, through.stderr
    assert f"as a score-batch flow run on the Prefect server at {prefect_harness}" in through.stderr

    def written(url: str) -> tuple[list[Any], list[Any], list[Any]]:
        with AnomalyStore(url) as store:
            batches = [(b.status, b.n_records, b.n_flagged, b.source) for b in store.list_batches()]
            rows = [
                (a.record_key, a.timestamp, a.score, a.threshold, a.p_value, a.details)
                for a in store.list_anomalies(limit=None)
            ]
            reports = [(r.drift_detected, r.drifted_share) for r in store.list_drift_reports()]
        return batches, rows, reports

    assert written(urls["direct"]) == written(urls["flow"])
    assert written(urls["direct"])[1] and written(urls["direct"])[2]  # flagged rows and a drift report
    # The flow path stays visible in Prefect; the direct one is no flow run there.
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["score-batch"])))
    assert [r.parameters["data"] for r in runs].count(str(batch.resolve())) == 1


def test_serve_prints_a_line_per_run_and_per_batch(
    scoring_home: tuple[Path, dict[str, str]], prefect_harness: str, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    _, env = scoring_home
    env = {**env, "PREFECT_API_URL": prefect_harness}
    with _serving(tmp_path, env, "metrics", "--every", "3600", stop=signal.SIGINT) as (proc, inbox, log):
        make_series(300, 3, seed=34, start="2026-03-04")[0].to_csv(inbox / "a_good.csv", index=False)
        bad = _bad_batches(tmp_path / "bad", seed=35)["missing_column"]
        (inbox / "b_bad.csv").write_bytes(bad.read_bytes())
        deadline = time.monotonic() + 180
        with get_client(sync_client=True) as client:
            deployment = None
            while deployment is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    deployment = client.read_deployment_by_name("score-inbox/score-inbox-metrics")
                except Exception:
                    time.sleep(1)
            assert deployment is not None, log.read_text()
            client.create_flow_run_from_deployment(deployment.id)  # a run now, as a schedule would
        while "b_bad.csv" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        out = log.read_text()
    assert f"score-inbox: 2 new batches in {inbox.resolve()}" in out, out
    assert re.search(r"done a_good\.csv \(batch \d+\): \d+ of 300 flagged, (no )?drift", out), out
    assert re.search(
        r"quarantined b_bad\.csv \(batch \d+\): .*value columns \['metric_1'\] not found", out
    ), out
    assert " | INFO " not in out and "Flow run" not in out, out  # Prefect's own logs stay quiet


def test_quickstart_keeps_a_champion_it_did_not_train(
    tiny_model: tuple[Any, pd.DataFrame, Path],
    _mlflow_template: Path,
    prefect_harness: str,
    cli_env: dict[str, str],
    aemon_home: Path,
) -> None:
    from aemon import registry

    # As if the user had recalibrated the demo model: its champion was not made by quickstart.
    _register(aemon_home, _mlflow_template, tiny_model, "quickstart-ts", "recalibrated from quickstart-ts/0")
    res = run_aemon("quickstart", env={**cli_env, "PREFECT_API_URL": prefect_harness})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Kept the champion quickstart-ts/1" in res.stdout and "--replace-champion" in res.stdout
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        versions = registry.list_models("quickstart-ts")
    assert [(v.version, "champion" in v.aliases) for v in versions] == [("1", True)]  # nothing trained
    with AnomalyStore(f"sqlite:///{aemon_home / 'aemon.db'}") as store:
        assert {b.model_version for b in store.list_batches()} == {"1"}  # scored with the kept champion
