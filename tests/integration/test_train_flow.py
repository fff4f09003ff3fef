"""The `train` flow, run for real against Prefect's test server and a real MLflow store; task
bodies that need neither are tested directly with `.fn()`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aemon.errors import ConfigError, DataError
from aemon.synthetic import make_images, make_series


@pytest.fixture
def series_files(tmp_path: Path) -> tuple[Path, Path]:
    """1500 rows; the last 20% (held out by the flow) hold a labelled level shift."""
    frame, labels, incidents = make_series(1500, 2, incidents=("spike", "flatline", "spike", "level_shift"))
    assert incidents[-1].start >= 1200
    frame.to_csv(tmp_path / "reference.csv", index=False)
    pd.DataFrame({"label": labels.astype(int)}).to_csv(tmp_path / "labels.csv", index=False)
    return tmp_path / "reference.csv", tmp_path / "labels.csv"


@pytest.mark.usefixtures("prefect_harness", "mlflow_store")
def test_train_registers_a_champion_and_keeps_it_from_a_worse_run(
    series_files: tuple[Path, Path],
) -> None:
    from aemon.registry import load_detector
    from flows.train import train

    data, labels = (str(p) for p in series_files)
    v1 = train(data, "cpu", window=16, epochs=2, labels=labels)
    assert (v1.version, v1.promoted, sorted(v1.aliases)) == ("1", True, ["challenger", "champion"])
    assert v1.evaluation["auroc"] > 0.9 and v1.evaluation["n_records"] == 300

    # A worse model: scores smoothed over 200 points blur the incidents into their neighbours.
    v2 = train(data, "cpu", window=16, epochs=1, latent_dim=1, labels=labels, options={"smoothing": 200})
    assert (v2.version, v2.promoted, v2.aliases) == ("2", False, ["challenger"]), v2.reason
    assert load_detector("cpu")[1].version == "1"


@pytest.mark.usefixtures("prefect_harness", "mlflow_store")
def test_train_on_an_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    from flows.train import train

    images, _ = make_images(120, size=16)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i:03d}.png")
    v = train(str(tmp_path), "rings", model="dense", epochs=2)
    assert v.promoted and v.threshold_method == "quantile"
    assert v.evaluation["n_records"] == 24  # 20% held out


@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_flow_raises_the_aemon_error(tmp_path: Path) -> None:
    from flows.train import train

    with pytest.raises(DataError, match="not found"):
        train(str(tmp_path / "missing.csv"), "cpu")


def test_split_holds_out_the_last_rows_or_a_stratified_image_share() -> None:
    from flows.train import Reference, split_holdout

    frame, labels, _ = make_series(100, 1)
    fit, hold = split_holdout.fn(Reference("timeseries", frame, labels, "x"), 0.2)
    assert hold is not None and len(fit) == 80 and len(hold) == 20
    assert hold.data["timestamp"].iloc[0] == frame["timestamp"].iloc[80]

    y = np.r_[np.zeros(90, int), np.ones(10, int)]
    images = np.zeros((100, 4, 4, 1), np.float32)
    fit, hold = split_holdout.fn(Reference("image", images, y, "x"), 0.2, seed=1)
    assert hold is not None and len(hold) == 20 and int(hold.labels.sum()) == 2  # type: ignore[union-attr]
    assert split_holdout.fn(Reference("image", images, y, "x"), 0.0)[1] is None
    with pytest.raises(ConfigError):
        split_holdout.fn(Reference("image", images, y, "x"), 0.7)


def test_labels_must_match_the_data(tmp_path: Path) -> None:
    from flows.train import load_reference

    frame, _, _ = make_series(50, 1)
    frame.to_csv(tmp_path / "s.csv", index=False)
    pd.DataFrame({"label": [0] * 49}).to_csv(tmp_path / "short.csv", index=False)
    pd.DataFrame({"flag": [0] * 50}).to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(DataError, match="49 rows, the data has 50"):
        load_reference.fn(str(tmp_path / "s.csv"), labels=str(tmp_path / "short.csv"))
    with pytest.raises(DataError, match="column 'label'"):
        load_reference.fn(str(tmp_path / "s.csv"), labels=str(tmp_path / "nolabel.csv"))


def test_retries_only_for_errors_that_may_not_repeat() -> None:
    import asyncio

    from prefect.states import exception_to_failed_state

    from aemon.errors import RegistryError
    from flows.common import retry_on_io

    for exc, retry in [
        (DataError("bad rows"), False),
        (ConfigError("bad option"), False),
        (RegistryError("server down"), True),
        (OSError("share gone"), True),
    ]:
        state = asyncio.run(exception_to_failed_state(exc))
        assert retry_on_io(None, None, state) is retry, exc


def test_unknown_detector_options_are_refused() -> None:
    from flows.train import Reference, fit_detector

    frame, _, _ = make_series(200, 1)
    with pytest.raises(ConfigError, match="bogus"):
        fit_detector.fn(Reference("timeseries", frame, None, "x"), {"bogus": 1})
