"""Autoencoder networks: plain `nn.Module`s, apart from the training loop.

Inputs are time-series windows (batch, window, columns) or images (batch, channels, H, W).
`dense` flattens the input through an MLP; `conv` uses Conv1d over windows, Conv2d over
images. A `variational` model's encoder returns a mean and a log-variance (VAE); its code for
scoring is the mean, so scores are deterministic.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from aemon.errors import ConfigError

Architecture = Literal["dense", "conv"]
ARCHITECTURES = ("dense", "conv")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network; stored in the detector manifest."""

    arch: str
    modality: str  # "timeseries" | "image"
    input_shape: tuple[int, ...]  # (window, columns) or (channels, height, width)
    latent_dim: int
    hidden: tuple[int, ...]
    variational: bool = False
    output: str = "identity"  # "identity" | "sigmoid"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(**{**d, "input_shape": tuple(d["input_shape"]), "hidden": tuple(d["hidden"])})


def default_spec(
    arch: str,
    modality: str,
    input_shape: tuple[int, ...],
    latent_dim: int | None = None,
    hidden: tuple[int, ...] | None = None,
    variational: bool = False,
    output: str = "identity",
) -> ModelSpec:
    """Sizes that work without tuning: a bottleneck of about 1/8 of the input (4..64)."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model must be one of {ARCHITECTURES}, got {arch!r}")
    n_in = math.prod(input_shape)
    if latent_dim is None:
        latent_dim = int(min(64, max(4, n_in // 8))) if modality == "timeseries" else 16
    if latent_dim < 1:
        raise ConfigError(f"latent_dim must be >= 1, got {latent_dim}")
    if hidden is None:
        if arch == "dense":
            h1 = int(min(512, max(32, n_in // 2)))
            hidden = (h1, int(max(latent_dim * 2, h1 // 2)))
        else:
            hidden = (32, 64) if modality == "timeseries" else (16, 32)
    return ModelSpec(arch, modality, tuple(input_shape), latent_dim, tuple(hidden), variational, output)


class AEOutput(NamedTuple):
    recon: torch.Tensor  # same shape as the input
    code: torch.Tensor  # sampled code for a VAE in training, else the mean
    mu: torch.Tensor
    logvar: torch.Tensor | None


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [nn.Linear(a, b), nn.GELU()]
    return nn.Sequential(*layers)


class Autoencoder(nn.Module):
    """Encoder -> bottleneck (`latent_dim`) -> decoder; reconstruction has the input's shape."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        shape = spec.input_shape
        n_in = math.prod(shape)
        if spec.arch == "dense":
            self.encoder: nn.Module = nn.Sequential(nn.Flatten(), _mlp([n_in, *spec.hidden]))
            n_feat = spec.hidden[-1] if spec.hidden else n_in
            self.decoder: nn.Module = nn.Sequential(
                _mlp([n_feat, *reversed(spec.hidden[:-1])]) if len(spec.hidden) > 1 else nn.Identity(),
                nn.Linear(spec.hidden[0] if len(spec.hidden) > 1 else n_feat, n_in),
                nn.Unflatten(1, shape),
            )
            self._feat_shape: tuple[int, ...] = (n_feat,)
        elif spec.modality == "timeseries":
            window, cols = shape
            self.encoder, self._feat_shape = self._conv_encoder(nn.Conv1d, cols, (window,))
            self.decoder = self._conv_decoder(nn.ConvTranspose1d, cols)
        else:
            ch, h, w = shape
            self.encoder, self._feat_shape = self._conv_encoder(nn.Conv2d, ch, (h, w))
            self.decoder = self._conv_decoder(nn.ConvTranspose2d, ch)
        n_feat = math.prod(self._feat_shape)
        self.to_code = nn.Linear(n_feat, spec.latent_dim * (2 if spec.variational else 1))
        self.from_code = nn.Sequential(nn.Linear(spec.latent_dim, n_feat), nn.GELU())

    def _conv_encoder(
        self, conv: type[nn.Module], in_ch: int, size: tuple[int, ...]
    ) -> tuple[nn.Module, tuple[int, ...]]:
        layers: list[nn.Module] = []
        ch = in_ch
        for out in self.spec.hidden:  # each layer halves the length (rounding up)
            layers += [conv(ch, out, kernel_size=3, stride=2, padding=1), nn.GELU()]
            ch = out
            size = tuple((s + 1) // 2 for s in size)
        return nn.Sequential(*layers, nn.Flatten()), (ch, *size)

    def _conv_decoder(self, deconv: type[nn.Module], out_ch: int) -> nn.Module:
        chans = [*reversed(self.spec.hidden)]
        layers: list[nn.Module] = [nn.Unflatten(1, self._feat_shape)]
        for a, b in itertools.pairwise(chans):  # each layer doubles the length
            layers += [deconv(a, b, kernel_size=4, stride=2, padding=1), nn.GELU()]
        layers.append(deconv(chans[-1], out_ch, kernel_size=4, stride=2, padding=1))
        return nn.Sequential(*layers)

    def _to_net(self, x: torch.Tensor) -> torch.Tensor:
        # Conv1d wants (batch, columns, window); windows arrive as (batch, window, columns).
        if self.spec.arch == "conv" and self.spec.modality == "timeseries":
            return x.transpose(1, 2)
        return x

    def _from_net(self, y: torch.Tensor) -> torch.Tensor:
        if self.spec.arch == "conv":
            if self.spec.modality == "timeseries":
                y = y[..., : self.spec.input_shape[0]].transpose(1, 2)
            else:
                y = y[..., : self.spec.input_shape[1], : self.spec.input_shape[2]]
        return torch.sigmoid(y) if self.spec.output == "sigmoid" else y

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.to_code(self.encoder(self._to_net(x)))
        if self.spec.variational:
            mu, logvar = h.chunk(2, dim=1)
            return mu, logvar.clamp(-10, 10)
        return h, None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic latent code (the mean for a VAE): (batch, latent_dim)."""
        return self.encode_stats(x)[0]

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self._from_net(self.decoder(self.from_code(code)))

    def forward(self, x: torch.Tensor, sample: bool = False) -> AEOutput:
        mu, logvar = self.encode_stats(x)
        code = mu
        if sample and logvar is not None:
            code = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return AEOutput(self.decode(code), code, mu, logvar)
