"""Every architecture, modality and objective builds, trains a little, and reconstructs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aemon import ConfigError
from aemon.models import Autoencoder, ModelSpec, default_spec
from aemon.training import TrainConfig, corrupt, objective_loss, resolve_device, train_autoencoder

SHAPES = {"timeseries": (24, 2), "image": (1, 10, 9)}


@pytest.mark.parametrize("arch", ["dense", "conv"])
@pytest.mark.parametrize("modality", ["timeseries", "image"])
@pytest.mark.parametrize("variational", [False, True])
def test_reconstruction_has_the_input_shape(arch: str, modality: str, variational: bool) -> None:
    model = Autoencoder(default_spec(arch, modality, SHAPES[modality], latent_dim=4, variational=variational))
    x = torch.randn(3, *SHAPES[modality])
    out = model(x, sample=True)
    assert out.recon.shape == x.shape and out.mu.shape == (3, 4)
    assert (out.logvar is not None) == variational
    assert model.encode(x).shape == (3, 4)


@pytest.mark.parametrize("arch", ["dense", "conv", "lstm", "aer"])
def test_a_level_free_column_errs_the_same_at_any_level(arch: str) -> None:
    spec = default_spec(arch, "timeseries", (32, 3), latent_dim=4, level_free=(1,))
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    model = Autoencoder(spec).eval()
    x = torch.randn(5, 32, 3)
    shifted = x.clone()
    shifted[..., 1] += 40.0  # the wandering column far from where it was
    with torch.inference_mode():
        a, b = model(x).recon, model(shifted).recon
        np.testing.assert_allclose((b - shifted).numpy(), (a - x).numpy(), atol=1e-4)
        np.testing.assert_allclose(model.encode(shifted).numpy(), model.encode(x).numpy(), atol=1e-5)
        other = x.clone()
        other[..., 0] += 40.0  # a column with its level: the network sees it
        assert not torch.allclose(model(other).recon[..., 1], a[..., 1], atol=1e-3)
    # Manifests written before level_free load as before.
    saved = {k: v for k, v in spec.to_dict().items() if k != "level_free"}
    assert ModelSpec.from_dict(saved).level_free == ()


@pytest.mark.parametrize("objective", ["undercomplete", "denoising", "sparse", "contractive", "vae"])
@pytest.mark.parametrize("loss", ["mse", "l1", "bce"])
def test_each_objective_lowers_the_loss(objective: str, loss: str) -> None:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 8 * np.pi, 24, dtype=np.float32)
    data = (0.5 + 0.4 * np.sin(t[None, :, None] + rng.uniform(0, 6, (400, 1, 1)))).astype(np.float32)
    data = np.repeat(data, 2, axis=2)
    model = Autoencoder(
        default_spec(
            "dense",
            "timeseries",
            (24, 2),
            latent_dim=4,
            variational=objective == "vae",
            output="sigmoid" if loss == "bce" else "identity",
        )
    )
    cfg = TrainConfig(objective=objective, loss=loss, epochs=6, samples_per_epoch=400, learning_rate=3e-3)
    result = train_autoencoder(model, data[:300], data[300:], cfg, device=torch.device("cpu"), progress=False)
    first, best = result.history[0]["val_loss"], result.best_val_loss
    assert best < first, (objective, loss, result.history)


@pytest.mark.parametrize("noise", ["gaussian", "masking", "salt_pepper"])
def test_noise_corrupts_a_fraction(noise: str) -> None:
    x = torch.full((100, 50), 0.5)
    x[0, 0], x[0, 1] = 0.0, 1.0  # give salt and pepper a range
    cfg = TrainConfig(objective="denoising", noise=noise, noise_level=0.2)
    noisy = corrupt(x, cfg, torch.Generator().manual_seed(0))
    changed = (noisy != x).float().mean().item()
    assert (0.15 < changed < 0.25) if noise != "gaussian" else changed > 0.99


def test_contractive_penalty_adds_to_the_loss() -> None:
    model = Autoencoder(default_spec("dense", "timeseries", (8, 1), latent_dim=2))
    x = torch.randn(16, 8, 1)
    plain = objective_loss(model, x, TrainConfig(), torch.Generator().manual_seed(0))
    cfg = TrainConfig(objective="contractive", contractive_weight=10.0)
    assert objective_loss(model, x, cfg, torch.Generator().manual_seed(0)) > plain


def test_early_stopping_restores_the_best_epoch() -> None:
    data = np.random.default_rng(0).normal(size=(200, 8, 1)).astype(np.float32)  # pure noise
    model = Autoencoder(default_spec("dense", "timeseries", (8, 1), latent_dim=2))
    cfg = TrainConfig(epochs=100, patience=2, samples_per_epoch=200, learning_rate=1e-2)
    result = train_autoencoder(model, data[:150], data[150:], cfg, device=torch.device("cpu"), progress=False)
    assert result.stopped_early and len(result.history) < 100
    assert result.best_epoch == 1 + int(np.argmin([h["val_loss"] for h in result.history]))


def test_bad_config_and_device() -> None:
    with pytest.raises(ConfigError, match="noise must be one of"):
        TrainConfig(noise="pink")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
