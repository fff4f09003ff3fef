"""A real-data check through the public API: one MNIST digit as the normal class.

Trains on the first 600 zeros of the MNIST test set (../shared/data/mnist), then scores the
other 9,400 images: the zeros it never saw must keep the promised false-positive rate, and
the other digits must rank above them. Skipped when the shared data is not there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from aemon import Detector
from aemon.data.images import read_idx_images

MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST.exists(), reason=f"MNIST not found at {MNIST}")
def test_one_digit_detector_separates_other_digits_and_keeps_its_fpr() -> None:
    import gzip

    images = read_idx_images(MNIST / "t10k-images-idx3-ubyte.gz")
    with gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), np.uint8, offset=8)
    zeros = np.flatnonzero(labels == 0)
    train = zeros[:600]
    rest = np.setdiff1d(np.arange(len(images)), train)
    det = Detector(epochs=10, samples_per_epoch=2048, target_fpr=0.01, progress=False).fit(images[train])
    res = det.score(images[rest])
    is_other = labels[rest] != 0
    assert roc_auc_score(is_other, res.scores) >= 0.95
    fpr = res.is_anomaly[~is_other].mean()  # 380 unseen zeros
    assert fpr <= 0.03, fpr
