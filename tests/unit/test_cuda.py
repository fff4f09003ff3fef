"""On a CUDA machine: every series model trains on the GPU with `device="auto"`, and the same
weights score the same on the CPU (a detector saved on a GPU machine serves on a CPU one).
Skipped without CUDA; run on a lent NVIDIA H200 on 2026-11-29 (README, "CUDA")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aemon.detector import Detector

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _series(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="5min"),
            "a": np.sin(2 * np.pi * t / 288) + 0.1 * rng.standard_normal(n),
            "b": np.cos(2 * np.pi * t / 288) + 0.1 * rng.standard_normal(n),
        }
    )


@pytest.mark.parametrize("model", ["dense", "lstm", "aer"])
def test_series_model_trains_on_cuda_and_scores_the_same_on_cpu(model: str, tmp_path: Path) -> None:
    test = _series(3_000, 1)
    test.loc[1500:1520, "a"] += 3.0
    det = Detector(modality="timeseries", model=model, epochs=5, seed=0, progress=False)
    det.fit(_series(6_000, 0))
    assert next(det.model_.parameters()).device.type == "cuda"
    on_gpu = det.score(test)
    on_cpu = Detector.load(det.save(tmp_path / model), device="cpu").score(test)
    assert next(Detector.load(tmp_path / model, device="cpu").model_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(on_gpu.scores, on_cpu.scores, rtol=1e-3, atol=1e-6)
    assert on_gpu.is_anomaly[1490:1540].any()
