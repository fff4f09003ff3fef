"""Training loop and objectives for the autoencoders.

Objectives (all reconstruct the clean input):
- `undercomplete`: plain reconstruction through the bottleneck;
- `denoising`: the input is corrupted (`gaussian`, `masking` or `salt_pepper` noise);
- `sparse`: plus an L1 penalty on the code, or a KL penalty towards a target activation;
- `contractive`: plus the squared Frobenius norm of the encoder Jacobian (Hutchinson estimate);
- `vae`: ELBO with a `beta`-weighted KL term (the model must be variational).

Adam, a validation split with early stopping (best weights restored), seeded and deterministic
on the CPU, CUDA when `device="auto"` finds one.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from aemon.errors import ConfigError
from aemon.models import SEQUENCE_ARCHITECTURES, Autoencoder

log = logging.getLogger(__name__)

OBJECTIVES = ("undercomplete", "denoising", "sparse", "contractive", "vae")
NOISES = ("gaussian", "masking", "salt_pepper")
LOSSES = ("mse", "l1", "bce")
SPARSITY = ("l1", "kl")
# Overlapping windows repeat each other; 4096 an epoch trains an LSTM of 32 units on 20k points
# to the validation loss of the dense model in about 60 epochs (see default_samples_per_epoch).
SEQUENCE_SAMPLES_PER_EPOCH = 4_096


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "undercomplete"
    loss: str = "mse"
    noise: str = "gaussian"
    noise_level: float = 0.2  # std (gaussian) or corrupted fraction (masking, salt_pepper)
    sparsity: str = "l1"
    sparsity_weight: float = 1e-3
    sparsity_target: float = 0.05  # KL sparsity: target mean activation of the sigmoid code
    contractive_weight: float = 1e-3
    beta: float = 1.0
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 8
    min_delta: float = 1e-4  # relative improvement that resets patience
    # Samples an epoch sees; None: the training set size clipped to [4096, 50000], so small
    # sets repeat and large ones subsample, and defaults train well at any size. The sequence
    # models (lstm, aer) see 4096 an epoch: an LSTM costs several times a dense net per sample.
    samples_per_epoch: int | None = None

    def __post_init__(self) -> None:
        checks = [
            ("objective", self.objective, OBJECTIVES),
            ("loss", self.loss, LOSSES),
            ("noise", self.noise, NOISES),
            ("sparsity", self.sparsity, SPARSITY),
        ]
        for name, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if not 0 <= self.noise_level < 1 and self.noise != "gaussian":
            raise ConfigError(f"noise_level must be in [0, 1) for {self.noise} noise")


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False


def resolve_device(device: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; any other torch device string as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but CUDA is not available")
    return dev


def elementwise_loss(recon: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-element reconstruction error (higher = worse); also the anomaly score's basis."""
    if loss == "mse":
        return (recon - target).square()
    if loss == "l1":
        return (recon - target).abs()
    eps = 1e-6
    r = recon.clamp(eps, 1 - eps)
    return -(target * torch.log(r) + (1 - target) * torch.log1p(-r))


def corrupt(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Noisy copy of `x` for the denoising objective."""
    if cfg.noise == "gaussian":
        return x + cfg.noise_level * torch.randn(x.shape, generator=gen, device=x.device)
    u = torch.rand(x.shape, generator=gen, device=x.device)
    if cfg.noise == "masking":
        return x.masked_fill(u < cfg.noise_level, 0.0)
    # salt and pepper: corrupted elements go to the data's min or max, half each
    lo, hi = x.amin().detach(), x.amax().detach()
    out = torch.where(u < cfg.noise_level / 2, lo, x)
    return torch.where((u >= cfg.noise_level / 2) & (u < cfg.noise_level), hi, out)


def objective_loss(
    model: Autoencoder, x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator
) -> torch.Tensor:
    """The scalar training loss of one batch for `cfg.objective`."""
    inputs = corrupt(x, cfg, gen) if cfg.objective == "denoising" else x
    if cfg.objective == "contractive":
        inputs = inputs.detach().requires_grad_(True)
    # cuDNN's LSTM cannot be differentiated twice (the contractive penalty's Jacobian needs it):
    # those models then run on PyTorch's own LSTM kernels.
    double_grad = cfg.objective == "contractive" and model.spec.arch in SEQUENCE_ARCHITECTURES
    with torch.backends.cudnn.flags(enabled=not double_grad):
        out = model(inputs, sample=cfg.objective == "vae")
    recon = elementwise_loss(out.recon, x, cfg.loss)
    loss = recon.flatten(1).sum(1).mean() if cfg.objective == "vae" else recon.mean()
    if cfg.objective == "sparse":
        if cfg.sparsity == "l1":
            loss = loss + cfg.sparsity_weight * out.code.abs().mean()
        else:
            rho_hat = torch.sigmoid(out.code).mean(0).clamp(1e-6, 1 - 1e-6)
            rho = cfg.sparsity_target
            kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
            loss = loss + cfg.sparsity_weight * kl.sum()
    elif cfg.objective == "contractive":
        # E_v ||J^T v||^2 = ||J||_F^2 for v ~ N(0, I): one extra backward, any architecture.
        v = torch.randn(out.code.shape, generator=gen, device=x.device)
        (jtv,) = torch.autograd.grad((out.code * v).sum(), inputs, create_graph=True)
        loss = loss + cfg.contractive_weight * jtv.square().flatten(1).sum(1).mean()
    elif cfg.objective == "vae":
        if out.logvar is None:
            raise ConfigError("the vae objective needs a variational model (arch 'vae')")
        kl = -0.5 * (1 + out.logvar - out.mu.square() - out.logvar.exp()).sum(1).mean()
        loss = loss + cfg.beta * kl
    return loss


@torch.no_grad()
def _validation_loss(model: Autoencoder, data: np.ndarray, cfg: TrainConfig, device: torch.device) -> float:
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(data), 1024):
        x = torch.from_numpy(np.ascontiguousarray(data[i : i + 1024])).to(device)
        err = elementwise_loss(model(x).recon, x, cfg.loss)
        total += float(err.mean()) * len(x)
        n += len(x)
    return total / max(n, 1)


def default_samples_per_epoch(model: Autoencoder, n_train: int) -> int:
    """Samples an epoch sees when the configuration does not say (see TrainConfig)."""
    if model.spec.arch in SEQUENCE_ARCHITECTURES:
        return SEQUENCE_SAMPLES_PER_EPOCH
    return int(np.clip(n_train, 4_096, 50_000))


def train_autoencoder(
    model: Autoencoder,
    train: np.ndarray,
    val: np.ndarray,
    cfg: TrainConfig,
    *,
    device: torch.device,
    seed: int = 0,
    progress: bool = True,
) -> TrainResult:
    """Fit `model` on `train` samples (array or read-only view, first axis = samples).

    Returns the loss history; the model ends with the weights of its best validation epoch.
    """
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    result = TrainResult()
    best_state: dict[str, Any] = copy.deepcopy(model.state_dict())
    bad_epochs = 0
    n_per_epoch = cfg.samples_per_epoch or default_samples_per_epoch(model, len(train))
    n_repeat = -(-n_per_epoch // len(train))
    bar = _progress(cfg.epochs, progress)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = np.concatenate([rng.permutation(len(train)) for _ in range(n_repeat)])
        order = order[:n_per_epoch]
        total = 0.0
        for i in range(0, n_per_epoch, cfg.batch_size):
            idx = np.sort(order[i : i + cfg.batch_size])
            x = torch.from_numpy(np.ascontiguousarray(train[idx])).to(device)
            loss = objective_loss(model, x, cfg, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        train_loss = total / n_per_epoch
        val_loss = _validation_loss(model, val, cfg, device) if len(val) else train_loss
        result.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if not math.isfinite(train_loss):
            raise ConfigError(f"training diverged at epoch {epoch} (loss {train_loss}); lower learning_rate")
        if val_loss < result.best_val_loss * (1 - cfg.min_delta):
            result.best_val_loss, result.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
            bad_epochs = 0
        else:
            bad_epochs += 1
        if bar is not None:
            bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_loss:.4g}")
            bar.update(1)
        log.debug("epoch %d train %.5g val %.5g", epoch, train_loss, val_loss)
        if bad_epochs >= cfg.patience:
            result.stopped_early = True
            break
    if bar is not None:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return result


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # A terminal that reports no size (a bare pty, some container consoles) makes tqdm hide
    # the bar, i.e. minutes of silence: give it 80 columns and 24 rows.
    size: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        if os.get_terminal_size(sys.stderr.fileno()).columns == 0:
            size = {"ncols": 80, "nrows": 24}
    return tqdm(total=total, desc="training", unit="epoch", leave=False, **size)
