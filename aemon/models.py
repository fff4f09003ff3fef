"""Autoencoder networks: plain `nn.Module`s, apart from the training loop.

Inputs are time-series windows (batch, window, columns) or images (batch, channels, H, W).
`dense` flattens the input through an MLP; `conv` uses Conv1d over windows, Conv2d over
images. A `variational` model's encoder returns a mean and a log-variance (VAE); its code for
scoring is the mean, so scores are deterministic.

Sequence autoencoders (time series only):
- `lstm`: an LSTM encoder reads the window, its last state becomes the code; the decoder LSTM
  is fed the code at every step and a linear layer maps its states back to the columns.
- `aer` (after Wong et al. 2022, "AER: Auto-Encoder with Regression"): a bidirectional LSTM
  encoder reads the window without its first and last step; a bidirectional LSTM decoder
  emits the whole window: step 0 is a backward prediction of the hidden first point, the last
  step a forward prediction of the hidden last point, the steps between a reconstruction.
  Scored like any window (each point's error averaged over the windows covering it), a
  point's error mixes reconstruction errors with the two prediction errors of the windows
  where it is an edge.
Both run about 16 LSTM steps per window whatever its length: each step reads a patch of
`window // 16` points (a strided linear embedding) and the decoder emits a patch per step.
An LSTM step costs about the same at any width, so this keeps training on a CPU affordable.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from aemon.errors import ConfigError

Architecture = Literal["dense", "conv", "lstm", "aer"]
ARCHITECTURES = ("dense", "conv", "lstm", "aer")
SEQUENCE_ARCHITECTURES = ("lstm", "aer")  # time series only


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network; stored in the detector manifest."""

    arch: str
    modality: str  # the adapter's name, for people reading the manifest
    input_shape: tuple[int, ...]  # (window, columns) or (channels, height, width)
    latent_dim: int
    hidden: tuple[int, ...]
    variational: bool = False
    output: str = "identity"  # "identity" | "sigmoid"
    patch: int = 1  # sequence models: steps per LSTM step (a strided linear embedding)
    edge_gain: float = 1.0  # aer: weight of the edge predictions' errors (see _weigh_edges)
    level_free: tuple[int, ...] = ()  # windowed: columns seen without their window's mean (_centre)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            **{
                **d,
                "input_shape": tuple(d["input_shape"]),
                "hidden": tuple(d["hidden"]),
                "level_free": tuple(d.get("level_free", ())),
            }
        )

    @property
    def windowed(self) -> bool:
        """Inputs are windows of a series (window, columns), not images (channels, height, width)."""
        return len(self.input_shape) == 2


def _default_latent_dim(sequence: bool, windowed: bool, n_in: int) -> int:
    if sequence:
        return int(min(64, max(16, n_in // 8)))
    return int(min(64, max(4, n_in // 8))) if windowed else 16


def _default_hidden(arch: str, windowed: bool, n_in: int, latent_dim: int) -> tuple[int, ...]:
    if arch in SEQUENCE_ARCHITECTURES:
        return (32,)  # per direction for aer
    if arch == "dense":
        h1 = int(min(512, max(32, n_in // 2)))
        return (h1, int(max(latent_dim * 2, h1 // 2)))
    return (32, 64) if windowed else (16, 32)


def default_spec(
    arch: str,
    modality: str,
    input_shape: tuple[int, ...],
    latent_dim: int | None = None,
    hidden: tuple[int, ...] | None = None,
    variational: bool = False,
    output: str = "identity",
    patch: int | None = None,
    edge_gain: float | None = None,
    level_free: tuple[int, ...] = (),
) -> ModelSpec:
    """Sizes that work without tuning: a bottleneck of about 1/8 of the input (4..64; 16..64
    for the sequence models), LSTMs of 32 units (`aer`: 32 per direction)."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model must be one of {ARCHITECTURES}, got {arch!r}")
    sequence = arch in SEQUENCE_ARCHITECTURES
    windowed = len(input_shape) == 2  # (window, columns); images are (channels, height, width)
    if sequence and not windowed:
        raise ConfigError(f"model {arch!r} is for time series only; use 'conv' or 'dense' for images")
    if sequence and input_shape[0] < (3 if arch == "aer" else 1):
        raise ConfigError(f"model {arch!r} needs a window of at least 3 steps, got {input_shape[0]}")
    n_in = math.prod(input_shape)
    if latent_dim is None:
        latent_dim = _default_latent_dim(sequence, windowed, n_in)
    if latent_dim < 1:
        raise ConfigError(f"latent_dim must be >= 1, got {latent_dim}")
    if hidden is not None and sequence and len(hidden) != 1:
        raise ConfigError(f"model {arch!r} takes one hidden size (LSTM units), got {hidden}")
    if hidden is None:
        hidden = _default_hidden(arch, windowed, n_in, latent_dim)
    if patch is None:  # about 16 LSTM steps per window: an LSTM step costs the same at any width
        patch = max(1, input_shape[0] // 16) if sequence else 1
    if patch < 1 or (patch > 1 and not sequence):
        raise ConfigError(f"patch must be 1 for {arch!r} and >= 1 for the sequence models, got {patch}")
    if edge_gain is None:
        edge_gain = 1.0
    if edge_gain <= 0 or (edge_gain != 1 and (arch != "aer" or output != "identity")):
        raise ConfigError("edge_gain must be > 0, and 1 unless the model is 'aer' with identity output")
    return ModelSpec(
        arch,
        modality,
        tuple(input_shape),
        latent_dim,
        tuple(hidden),
        variational,
        output,
        patch,
        edge_gain,
        tuple(level_free),
    )


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


class _LSTMEncoder(nn.Module):
    """Reads (batch, steps, columns); returns the last state of each direction, concatenated.

    With `patch` > 1, each run of `patch` steps is first embedded linearly (a strided Conv1d;
    the tail is zero-padded), so the LSTM runs `patch` times fewer steps.
    """

    def __init__(self, n_in: int, units: int, bidirectional: bool, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv1d(n_in, units, kernel_size=patch, stride=patch) if patch > 1 else None
        self.lstm = nn.LSTM(
            units if patch > 1 else n_in, units, batch_first=True, bidirectional=bidirectional
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = nn.functional.pad(x.transpose(1, 2), (0, -x.shape[1] % self.patch))
            x = self.embed(x).transpose(1, 2)
        _, (h_n, _) = self.lstm(x)
        return h_n.transpose(0, 1).flatten(1)  # (batch, directions * units)


class _LSTMDecoder(nn.Module):
    """Feeds the same vector at every LSTM step; a linear layer maps each state to `patch`
    steps of the columns; the output is cut to `steps`."""

    def __init__(
        self, n_in: int, units: int, bidirectional: bool, steps: int, n_out: int, patch: int
    ) -> None:
        super().__init__()
        self.steps, self.patch, self.n_out = steps, patch, n_out
        self.lstm = nn.LSTM(n_in, units, batch_first=True, bidirectional=bidirectional)
        self.out = nn.Linear(units * (2 if bidirectional else 1), n_out * patch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        n_steps = -(-self.steps // self.patch)
        states, _ = self.lstm(z.unsqueeze(1).expand(-1, n_steps, -1))
        y = self.out(states).reshape(len(z), n_steps * self.patch, self.n_out)
        return y[:, : self.steps]  # (batch, steps, columns)


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
        elif spec.arch in SEQUENCE_ARCHITECTURES:
            window, cols = shape
            units, bi = spec.hidden[0], spec.arch == "aer"
            n_feat = units * (2 if bi else 1)
            self.encoder = _LSTMEncoder(cols, units, bi, spec.patch)
            self.decoder = _LSTMDecoder(n_feat, units, bi, window, cols, spec.patch)
            self._feat_shape = (n_feat,)
        elif spec.windowed:
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
        if self.spec.arch == "conv" and self.spec.windowed:
            return x.transpose(1, 2)
        if self.spec.arch == "aer":  # the first and last steps are to be predicted, not seen
            return x[:, 1:-1]
        return x

    def _from_net(self, y: torch.Tensor) -> torch.Tensor:
        if self.spec.arch == "conv":
            if self.spec.windowed:
                y = y[..., : self.spec.input_shape[0]].transpose(1, 2)
            else:
                y = y[..., : self.spec.input_shape[1], : self.spec.input_shape[2]]
        return torch.sigmoid(y) if self.spec.output == "sigmoid" else y

    def _centre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The window less each level-free column's mean over it, and those means (batch, 1,
        columns; zero elsewhere): the network sees such a column's shape, not its level."""
        if not self.spec.level_free:
            return x, None
        cols = list(self.spec.level_free)
        level = torch.zeros_like(x[:, :1])
        level[..., cols] = x[..., cols].mean(dim=1, keepdim=True)
        return x - level, level

    def encode_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._code_stats(self._centre(x)[0])

    def _code_stats(self, centred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.to_code(self.encoder(self._to_net(centred)))
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
        centred, level = self._centre(x)
        mu, logvar = self._code_stats(centred)
        code = mu
        if sample and logvar is not None:
            code = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = self.decode(code)
        if level is not None:  # the level comes back as it went in: only the shape can err
            recon = recon + level
        if self.spec.edge_gain != 1:
            recon = self._weigh_edges(recon, x)
        return AEOutput(recon, code, mu, logvar)

    def _weigh_edges(self, recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """aer: make the two edge predictions count `edge_gain**2` times a reconstructed step in
        squared errors (`edge_gain` times in absolute ones), in scores and in training alike.

        Scoring compares `recon` with the input, so in evaluation an edge is returned as
        `x + gain * (prediction - x)`: its error is the prediction's, times the gain. Training
        compares it with the clean target, which the forward pass does not see under the
        denoising objective, so there the prediction is returned unchanged and only its
        gradient is scaled by `gain**2`.

        Off by default (1): a gain of 5.57 (for window 64, Orion's reg_ratio of 0.5: the two
        predictions weigh as much as the 62 reconstructed steps) or 2.5 did not do better than
        1 on NAB's quick subset (standard score 37.9 and 47.0 against 48.1) nor on the quick
        generated multivariate suite (event F1 0.909 and 0.952 against 0.952).
        """
        g = self.spec.edge_gain
        edges = recon[:, [0, -1]]
        if self.training:
            edges = edges + (g * g - 1) * (edges - edges.detach())
        else:
            target = x[:, [0, -1]]
            edges = target + g * (edges - target)
        return torch.cat([edges[:, :1], recon[:, 1:-1], edges[:, 1:]], dim=1)
