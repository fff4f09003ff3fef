"""Speed suite: what scoring costs end to end, against the model's own forward pass (the floor)
and PyOD's AutoEncoder on the same windows, and how cost and memory grow with the batch.

End to end = `aemon.batches.score_batch_into_store`, the body of the `score-batch` flow's
scoring task: hash the file, read and validate the CSV, window, reconstruct, average the errors
per point, merge events, write the flagged rows and the batch status to the database. Each
size runs in a fresh subprocess so its peak RSS is its own.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aemon import config
from aemon.benchmarks.common import SuiteResult, progress, timed
from aemon.errors import ScoringError

log = logging.getLogger(__name__)

WINDOW = 64
SPEED_DETECTOR: dict[str, Any] = {"window": WINDOW, "epochs": 3}  # training quality is not measured here

# Times the Prefect flows against the same library calls: (detector, reference, scratch folder,
# main file) -> figures. The application passes it in (flows/benchmark.py); the library never
# imports Prefect.
FlowOverhead = Callable[[Any, pd.DataFrame, Path, Path], dict[str, Any]]


def write_series_csv(path: Path, n_rows: int, seed: int = 0, period: int = 288) -> Path:
    """A one-column 5-minute series of `n_rows` rows (a cycle of `period` rows, a day by default,
    plus noise), written with pyarrow."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2020-01-01", periods=n_rows, freq="5min")
    t = np.arange(n_rows)
    values = np.sin(2 * np.pi * t / period) + 0.1 * rng.standard_normal(n_rows)
    table = pa.table(
        {
            "timestamp": pa.array(np.datetime_as_string(stamps.to_numpy(), unit="s")),
            "value": pa.array(values.round(5)),
        }
    )
    pacsv.write_csv(table, path)
    return path


def bare_forward(model: Any, windows: np.ndarray, chunk: int = 16_384) -> float:
    """Seconds for the model's forward pass and squared error over every window (the floor)."""
    import torch

    with timed() as t, torch.inference_mode():
        for i in range(0, len(windows), chunk):
            x = torch.from_numpy(np.ascontiguousarray(windows[i : i + chunk]))
            (model(x).recon - x).square().mean(dim=(1, 2))
    return t.seconds


def pyod_scoring(train_windows: np.ndarray, windows: np.ndarray, seed: int) -> tuple[float, float]:
    """PyOD AutoEncoder (defaults, 2 epochs): (fit seconds, `decision_function` seconds)."""
    from pyod.models.auto_encoder import AutoEncoder

    model = AutoEncoder(epoch_num=2, random_state=seed, verbose=0)
    flat = train_windows.reshape(len(train_windows), -1)
    with timed() as fit:
        model.fit(flat)
    with timed() as score:
        model.decision_function(windows.reshape(len(windows), -1))
    return fit.seconds, score.seconds


# Peak RSS from /proc (VmHWM): ru_maxrss survives exec, so a child would report its parent's
# peak when the parent was bigger (it holds the windows and PyOD's model).
_WORKER = """
import json, resource, sys, time
def peak_rss_mb():
    try:
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
from pathlib import Path
from aemon.batches import score_batch_into_store
from aemon.detector import Detector
from aemon.store import AnomalyStore
det = Detector.load(sys.argv[1], device="cpu")
store = AnomalyStore(sys.argv[3])
store.upgrade()
t1 = time.perf_counter()
out = score_batch_into_store(store, det, Path(sys.argv[2]), model_name="speed", model_version=sys.argv[4])
t2 = time.perf_counter()
store.close()
if out.status != "done":
    sys.exit(f"scoring failed: {out.error}")
print(json.dumps({"seconds": t2 - t1, "startup": t1 - t0, "n_records": out.n_records,
                  "n_flagged": out.n_flagged,
                  "peak_rss_mb": peak_rss_mb()}))
"""


def end_to_end(detector_dir: Path, csv: Path, db_url: str, version: str) -> dict[str, Any]:
    """Score one file into the database in a fresh process; seconds and peak RSS."""
    env = config.child_environment()
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, str(detector_dir), str(csv), db_url, version],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise ScoringError(f"end-to-end worker failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def end_to_end_in_process(detector: Any, csv: Path, db_url: str, version: str) -> dict[str, Any]:
    """Score one file into the database in this process (warm: imports and kernels loaded)."""
    from aemon.batches import score_batch_into_store
    from aemon.store import AnomalyStore

    with AnomalyStore(db_url) as store:
        store.upgrade()
        with timed() as t:
            out = score_batch_into_store(store, detector, csv, model_name="speed", model_version=version)
    if out.status != "done":
        raise ScoringError(f"end-to-end scoring failed: {out.error}")
    return {"seconds": t.seconds, "n_records": out.n_records, "n_flagged": out.n_flagged}


def run_speed(
    data_dir: Path | None,
    *,
    quick: bool = False,
    seed: int = 0,
    sizes: Sequence[int] | None = None,
    flow_overhead: FlowOverhead | None = None,
    show_progress: bool = True,
) -> SuiteResult:
    """Time scoring (and MNIST) end to end, the bare forward and PyOD on the same windows;
    `flow_overhead`, when given, also times the Prefect flows."""
    import torch

    from aemon.detector import Detector

    main_n = 100_000 if quick else 1_000_000
    sizes = list(
        sizes
        if sizes is not None
        else ((10_000, 100_000) if quick else (10_000, 100_000, 1_000_000, 10_000_000))
    )
    threads = torch.get_num_threads()
    with (
        tempfile.TemporaryDirectory(prefix="aemon-speed-") as tmp_name,
        # Database and MLflow store in the scratch folder: a benchmark never touches real state.
        config.environment(
            AEMON_DATABASE_URL=f"sqlite:///{Path(tmp_name) / 'aemon.db'}",
            MLFLOW_TRACKING_URI=f"sqlite:///{Path(tmp_name) / 'mlflow.db'}",
        ),
    ):
        tmp = Path(tmp_name)
        # Reference and scored files from one generator, as in monitoring: the scored batches
        # are normal, so about as many points are flagged as the detector promises.
        train = pd.read_csv(write_series_csv(tmp / "train.csv", 20_000, seed + 7), parse_dates=["timestamp"])
        det = Detector(modality="timeseries", seed=seed, progress=False, **SPEED_DETECTOR)
        with timed() as fit_t:
            det.fit(train)
        det_dir = det.save(tmp / "detector")
        db_url = f"sqlite:///{tmp / 'speed.db'}"
        # The floor and PyOD, on the same windows of the main-size file.
        main_csv = write_series_csv(tmp / f"series_{main_n}.csv", main_n, seed)
        # The model's inputs as scoring builds them (calendar phases included).
        windows = det.adapter_.model_inputs(det, det.read(main_csv))
        # Warm-ups (first calls allocate and load kernels), then the floor and end to end in
        # turns, best of 3 each: on a shared machine a burst of load then hits both alike.
        bare_forward(det.model_, windows[:50_000])
        end_to_end_in_process(det, write_series_csv(tmp / "warmup.csv", 10_000, seed + 2), db_url, "warmup")
        forward_runs, e2e_runs = [], []
        for i in range(3):
            forward_runs.append(bare_forward(det.model_, windows))
            e2e_runs.append(end_to_end_in_process(det, main_csv, db_url, version=f"main{i}"))
        forward_s = min(forward_runs)
        e2e = min(e2e_runs, key=lambda r: r["seconds"])
        train_w = det.adapter_.model_inputs(det, det.read(train))[:16_000]
        pyod_fit_s, pyod_s = pyod_scoring(np.ascontiguousarray(train_w), windows, seed)
        # A batch unlike the reference (a 200-row cycle): most of it is flagged, so the rows
        # and events cost what they cost at their worst.
        odd_csv = write_series_csv(tmp / "odd.csv", main_n, seed + 4, period=200)
        odd = end_to_end_in_process(det, odd_csv, db_url, version="odd")
        stages = _stages(det, main_csv)
        # Every size in a fresh process: cost including first-call costs, and its own peak RSS.
        scaling = []
        for n in progress(sizes, "speed sizes", show_progress):
            csv = main_csv if n == main_n else write_series_csv(tmp / f"series_{n}.csv", n, seed + 1)
            r = end_to_end(det_dir, csv, db_url, version=f"v{n}")
            scaling.append({"points": n, **r, "points_per_s": n / r["seconds"]})
            if csv != main_csv:
                csv.unlink()
        flow_record: dict[str, Any] = {}
        if flow_overhead is not None:
            flow_record = flow_overhead(det, train, tmp, main_csv)
        mnist_record = _mnist_speed(data_dir, seed, quick) if data_dir is not None else {}
        models = _series_models(train, seed, 10_000 if quick else 100_000, tmp, show_progress)
    ratio_floor = e2e["seconds"] / forward_s
    pyod_ratio = pyod_s / e2e["seconds"]
    big = scaling[-1]
    lines = [
        "### Speed: scoring a series end to end",
        "",
        f"Data: generated 5-minute series (one column), window {WINDOW}, stride 1; the detector is "
        f"aemon's default dense autoencoder (fitted in {fit_t.seconds:.1f} s on 20k rows of the same "
        "generator, 3 epochs). "
        f"{threads} torch threads. Same process and run: the bare model forward + squared error on "
        f"the same {main_n:,} windows (the floor) and PyOD's AutoEncoder `decision_function` "
        "on the same windows (PyOD defaults, 2 training epochs). Floor and end to end: best of 3 "
        "runs each, taken in turns after a warm-up.",
        "",
        "| what | seconds | ratio |",
        "|---|---:|---:|",
        f"| end to end: file → windows → scores → events → DB rows ({main_n:,} points) | "
        f"{e2e['seconds']:.2f} | {ratio_floor:.2f}× the floor |",
        f"| bare forward + error (floor) | {forward_s:.2f} | 1× |",
        f"| PyOD AutoEncoder `decision_function` | {pyod_s:.1f} | aemon {pyod_ratio:.0f}× faster |",
        "",
        f"End to end and the floor run in the same process; {e2e['n_flagged']:,} points flagged "
        "(above the detector's threshold) become rows in the database: the file comes from the "
        "reference's generator, as a normal batch does. A batch unlike the reference (a 200-row "
        f"cycle instead of 288), {odd['n_flagged']:,} points flagged: {odd['seconds']:.2f} s "
        f"({odd['seconds'] / forward_s:.2f}× the floor). Where the time "
        f"goes (best of 3 each): reading and checking the CSV {stages['read_s']:.2f} s, "
        f"`Detector.score` (read, model, overlap-add, events) {stages['score_s']:.2f} s, so "
        f"hashing the file and writing the rows {e2e['seconds'] - stages['score_s']:.2f} s.",
        "",
        "How cost grows (each size in a fresh process, so first-call costs of torch, pyarrow and "
        "SQLAlchemy are included; peak RSS of that process):",
        "",
        "| points | seconds | points / s | peak RSS (MB) | flagged |",
        "|---:|---:|---:|---:|---:|",
        *[
            f"| {s['points']:,} | {s['seconds']:.2f} | {s['points_per_s']:,.0f} | {s['peak_rss_mb']:.0f} | "
            f"{s['n_flagged']} |"
            for s in scaling
        ],
        "",
        f"Targets: end to end ≤ 2× the floor: {'met' if ratio_floor <= 2 else 'not met'} "
        f"({ratio_floor:.2f}×); "
        f"≥ 50× faster than PyOD: {'met' if pyod_ratio >= 50 else 'not met'} ({pyod_ratio:.0f}×); "
        f"{big['points']:,} points under 2 GB RSS: "
        f"{'met' if big['peak_rss_mb'] < 2048 else 'not met'} ({big['peak_rss_mb']:.0f} MB).",
    ]
    if flow_record:
        lines += [
            "",
            "Prefect `score-batch` flow vs the same library calls (model load, score, store, drift "
            "report) on "
            f"{flow_record['batch_rows']:,}-row batches, mean of {flow_record['repeats']}: flow "
            f"{flow_record['flow_s']:.2f} s, direct {flow_record['direct_s']:.2f} s, overhead "
            f"**{flow_record['overhead_s']:.2f} s per batch** (target < 1 s: "
            f"{'met' if flow_record['overhead_s'] < 1 else 'not met'})"
            + (
                f"; without Prefect's flow heartbeat thread (stopped at the end of every run): "
                f"{flow_record['overhead_no_heartbeat_s']:.2f} s"
                if flow_record.get("overhead_no_heartbeat_s") is not None
                else ""
            )
            + f". On the scheduled path, one `score-inbox` run over {flow_record['repeats']} such "
            f"batches took {flow_record['inbox_flow_s']:.2f} s: "
            f"**{flow_record['inbox_overhead_per_batch_s']:.2f} s overhead per batch**"
            + ". The first flow run of a process "
            f"also starts Prefect's temporary server: {flow_record['first_run_s']:.1f} s. "
            f"The {main_n:,}-point file through `score-batch`: {flow_record['main_flow_s']:.2f} s.",
            "",
            f"`aemon score` on a {flow_record['one_off_rows']}-row batch, as a user runs it (a "
            "fresh process; no Prefect server, so the flow's code runs without Prefect; best of "
            f"{flow_record['repeats']} after a warm-up): **{flow_record['one_off_cli_s']:.2f} s** "
            f"(target ≤ 3 s: {'met' if flow_record['one_off_cli_s'] <= 3 else 'not met'}).",
        ]
    lines += [
        "",
        "### Speed: the series models with their defaults",
        "",
        f"`Detector(model=...)` with no other option, fitted on the same 20k-row series (early "
        f"stopping decides the epochs), then `Detector.score` on {models[0]['points']:,} points "
        "in this process (best of 2). Target: the default trains in ≤ 60 s on 2 cores.",
        "",
        "| model | fit (s) | epochs | score (s) | points / s |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {m['model']} | {m['fit_s']:.1f} | {m['epochs']} | {m['score_s']:.2f} | "
            f"{m['points'] / m['score_s']:,.0f} |"
            for m in models
        ],
    ]
    if mnist_record:
        lines += [
            "",
            "### Speed: MNIST",
            "",
            f"10,000 t10k images end to end (IDX file → images → scores → error maps): "
            f"{mnist_record['score_s']:.2f} s; bare forward {mnist_record['forward_s']:.2f} s. "
            f"A digit model (500 images, aemon defaults) trained in {mnist_record['fit_s']:.1f} s "
            f"(target < 60 s: {'met' if mnist_record['fit_s'] < 60 else 'not met'}).",
        ]
    record = {
        "data": "generated one-column 5-minute series (aemon.benchmarks.speed.write_series_csv)",
        "protocol": "score_batch_into_store in process (ratio) and in a fresh process per size "
        "(scaling, peak RSS); bare forward and PyOD on the same windows",
        "detector": SPEED_DETECTOR,
        "seed": seed,
        "quick": quick,
        "torch_threads": threads,
        "points": main_n,
        "end_to_end_s": e2e["seconds"],
        "bare_forward_s": forward_s,
        "bare_forward_runs_s": forward_runs,
        "end_to_end_runs_s": [r["seconds"] for r in e2e_runs],
        "n_flagged": e2e["n_flagged"],
        "unlike_reference": odd,
        "stages_s": stages,
        "pyod_autoencoder_score_s": pyod_s,
        "pyod_autoencoder_fit_s": pyod_fit_s,
        "ratio_to_floor": ratio_floor,
        "speedup_vs_pyod": pyod_ratio,
        "scaling": scaling,
        "flow": flow_record,
        "mnist": mnist_record,
        "series_models": models,
    }
    return SuiteResult("speed", "\n".join(lines), record, [lambda folder: plot_scaling(scaling, folder)])


def _series_models(
    train: pd.DataFrame, seed: int, n_points: int, tmp: Path, show: bool
) -> list[dict[str, Any]]:
    """Fit time with the defaults and scoring throughput of each series model."""
    from aemon.detector import Detector
    from aemon.models import SEQUENCE_ARCHITECTURES

    frame = pd.read_csv(write_series_csv(tmp / "models.csv", n_points, seed + 3))
    rows = []
    for model in progress(("dense", *SEQUENCE_ARCHITECTURES), "series models", show):
        det = Detector(modality="timeseries", model=model, seed=seed, progress=False)
        with timed() as fit_t:
            det.fit(train)
        score_s = []
        for _ in range(2):
            with timed() as t:
                det.score(frame)
            score_s.append(t.seconds)
        rows.append(
            {
                "model": model,
                "fit_s": fit_t.seconds,
                "epochs": len(det.training_.history),
                "score_s": min(score_s),
                "points": n_points,
            }
        )
    return rows


def _stages(detector: Any, csv: Path) -> dict[str, float]:
    """Best-of-3 seconds of reading the file alone and of `Detector.score` (read included)."""
    from aemon.data.timeseries import iter_series

    def read() -> None:
        for _ in iter_series(csv, detector.schema_)[1]:
            pass

    def seconds(work: Any) -> float:
        with timed() as t:
            work()
        return t.seconds

    return {
        "read_s": min(seconds(read) for _ in range(3)),
        "score_s": min(seconds(lambda: detector.score(csv)) for _ in range(3)),
    }


def _mnist_speed(data_dir: Path, seed: int, quick: bool) -> dict[str, Any]:
    """One digit model fitted with defaults; 10k test images scored end to end from the IDX file."""
    import torch

    from aemon.benchmarks.mnist import load_mnist
    from aemon.detector import Detector

    train_x, train_y, test_x, _ = load_mnist(data_dir)
    det = Detector(modality="image", seed=seed, progress=False)
    with timed() as fit:
        det.fit(train_x[train_y == 0])
    idx = data_dir / "mnist" / "t10k-images-idx3-ubyte.gz"
    with timed() as score:
        res = det.score(idx)
    images = torch.from_numpy(test_x[:, None].astype(np.float32) / 255.0)
    with timed() as fwd, torch.inference_mode():
        for i in range(0, len(images), 1024):
            x = images[i : i + 1024]
            (det.model_(x).recon - x).square().mean(dim=(1, 2, 3))
    return {
        "fit_s": fit.seconds,
        "score_s": score.seconds,
        "forward_s": fwd.seconds,
        "n_images": res.n_records,
    }


def plot_scaling(scaling: list[dict[str, Any]], folder: Path) -> Path:
    """Log-log: seconds and peak RSS against points."""
    from aemon.benchmarks.report import new_figure

    fig, ax = new_figure(6, 3.6)
    n = [s["points"] for s in scaling]
    ax.loglog(n, [s["seconds"] for s in scaling], "o-", label="end to end (s)")
    ax.loglog(n, [n_ / n[-1] * scaling[-1]["seconds"] for n_ in n], ":", color="gray", label="linear")
    ax.set_xlabel("points")
    ax.set_ylabel("seconds")
    ax2 = ax.twinx()
    ax2.semilogx(n, [s["peak_rss_mb"] for s in scaling], "s--", color="tab:red", label="peak RSS (MB)")
    ax2.set_ylabel("peak RSS (MB)")
    ax.legend(loc="upper left", fontsize=8)
    ax2.legend(loc="lower right", fontsize=8)
    ax.set_title("Scoring cost by batch size")
    path = folder / "speed_scaling.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
