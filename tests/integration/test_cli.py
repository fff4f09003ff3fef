"""The `aemon` command line end to end, in subprocesses: exit codes, the summary, `models`.

One training run uses Prefect with no configuration at all (its temporary local server, as a
user gets it); the other points PREFECT_API_URL at the session's test server, the path a
deployment with a real server takes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from aemon.synthetic import make_images, make_series


def run_aemon(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
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
        "(quantile)",
        "calibration FPR",
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
    for args in ((), ("train",), ("models",)):
        res = run_aemon(*args, "--help", env=cli_env)
        assert res.returncode == 0 and "Usage" in res.stdout
    assert "--labels" in run_aemon("train", "--help", env=cli_env).stdout
