"""Sequence autoencoders (`lstm`, `aer`): shapes, training, objectives, save/load, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aemon import ConfigError, Detector
from aemon.models import SEQUENCE_ARCHITECTURES, Autoencoder, ModelSpec, default_spec
from aemon.synthetic import make_series
from aemon.training import TrainConfig, train_autoencoder

FAST = {"epochs": 2, "progress": False, "samples_per_epoch": 256, "window": 12}


def _waves(n: int, window: int, cols: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4 * np.pi, window, dtype=np.float32)
    phase = rng.uniform(0, 6, (n, 1, cols)).astype(np.float32)
    return np.sin(t[None, :, None] + phase).astype(np.float32)


@pytest.fixture(scope="module")
def series() -> pd.DataFrame:
    return make_series(600, 2, seed=3)[0]


@pytest.mark.parametrize("arch", SEQUENCE_ARCHITECTURES)
@pytest.mark.parametrize("window", [3, 10, 40])  # 40: patched (3 steps per LSTM step), ragged end
@pytest.mark.parametrize("variational", [False, True])
def test_shapes(arch: str, window: int, variational: bool) -> None:
    model = Autoencoder(default_spec(arch, "timeseries", (window, 3), latent_dim=5, variational=variational))
    x = torch.randn(4, window, 3)
    out = model(x, sample=True)
    assert out.recon.shape == x.shape and out.mu.shape == (4, 5)
    assert (out.logvar is not None) == variational
    assert model.encode(x).shape == (4, 5)


def test_aer_hides_the_edges_from_the_encoder() -> None:
    """The first and last steps are predicted: changing them leaves the output unchanged."""
    model = Autoencoder(default_spec("aer", "timeseries", (10, 2), latent_dim=4)).eval()
    x = torch.randn(3, 10, 2)
    y = x.clone()
    y[:, 0] += 5.0
    y[:, -1] -= 5.0
    assert torch.equal(model(x).recon, model(y).recon)
    y[:, 4] += 1.0
    assert not torch.equal(model(x).recon, model(y).recon)


def test_aer_edge_gain_weighs_the_prediction_errors() -> None:
    """Evaluation: edge errors times gain**2 (squared); training: same values, gradients x gain**2."""
    x = torch.randn(4, 10, 2)
    plain = Autoencoder(default_spec("aer", "timeseries", (10, 2), latent_dim=4))
    gained = Autoencoder(default_spec("aer", "timeseries", (10, 2), latent_dim=4, edge_gain=3.0))
    gained.load_state_dict(plain.state_dict())
    plain.eval(), gained.eval()
    e0, e1 = (plain(x).recon - x).square(), (gained(x).recon - x).square()
    torch.testing.assert_close(e1[:, [0, -1]], 9 * e0[:, [0, -1]])
    torch.testing.assert_close(e1[:, 1:-1], e0[:, 1:-1])
    plain.train(), gained.train()
    grads = []
    for model in (plain, gained):
        recon = model(x).recon
        assert torch.equal(recon, plain(x).recon)
        model.zero_grad()
        (recon[:, 0] - x[:, 0]).square().sum().backward()
        grads.append(model.decoder.out.bias.grad.clone())
    torch.testing.assert_close(grads[1], 9 * grads[0])
    with pytest.raises(ConfigError, match="edge_gain"):
        default_spec("lstm", "timeseries", (10, 2), edge_gain=2.0)


@pytest.mark.parametrize("arch", SEQUENCE_ARCHITECTURES)
@pytest.mark.parametrize("objective", ["undercomplete", "denoising", "vae", "sparse", "contractive"])
def test_training_lowers_the_loss(arch: str, objective: str) -> None:
    data = _waves(300, 12, 2)
    spec = default_spec(
        arch, "timeseries", (12, 2), latent_dim=4, hidden=(16,), variational=objective == "vae"
    )
    cfg = TrainConfig(objective=objective, epochs=8, samples_per_epoch=300, learning_rate=5e-3)
    result = train_autoencoder(
        Autoencoder(spec), data[:240], data[240:], cfg, device=torch.device("cpu"), progress=False
    )
    assert result.best_val_loss < result.history[0]["val_loss"], result.history


def test_images_and_bad_sizes_raise_config_error() -> None:
    for arch in SEQUENCE_ARCHITECTURES:
        with pytest.raises(ConfigError, match="time series only"):
            default_spec(arch, "image", (1, 8, 8))
        with pytest.raises(ConfigError, match="one hidden size"):
            default_spec(arch, "timeseries", (8, 1), hidden=(8, 8))
    with pytest.raises(ConfigError, match="at least 3 steps"):
        default_spec("aer", "timeseries", (2, 1))
    with pytest.raises(ConfigError, match="patch must be 1"):
        default_spec("dense", "timeseries", (8, 1), patch=2)
    with pytest.raises(ConfigError, match="time series only"):
        Detector(modality="image", model="lstm", progress=False).fit(np.zeros((20, 8, 8), np.float32))


def test_specs_saved_before_patch_still_load() -> None:
    old = {"arch": "conv", "modality": "timeseries", "input_shape": [16, 2], "latent_dim": 4}
    spec = ModelSpec.from_dict({**old, "hidden": [8, 16], "variational": False, "output": "identity"})
    assert spec.patch == 1 and Autoencoder(spec)(torch.randn(2, 16, 2)).recon.shape == (2, 16, 2)


@pytest.mark.parametrize("arch", SEQUENCE_ARCHITECTURES)
def test_detector_save_load_and_seed(arch: str, series: pd.DataFrame, tmp_path: Path) -> None:
    det = Detector(model=arch, seed=1, **FAST).fit(series)
    res = det.score(series)
    assert np.isfinite(res.scores).all() and res.scores.shape == (len(series),)
    assert det.encode(series, max_samples=50).shape == (50, det.model_.spec.latent_dim)
    loaded = Detector.load(det.save(tmp_path / arch))
    assert loaded.model_.spec == det.model_.spec
    np.testing.assert_array_equal(loaded.score(series).scores, res.scores)
    again = Detector(model=arch, seed=1, **FAST).fit(series)
    np.testing.assert_array_equal(again.score(series).scores, res.scores)
