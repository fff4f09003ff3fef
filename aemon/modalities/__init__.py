"""The modality adapters: one per kind of record, the only place a modality's name is
matched (see `aemon.modalities.base.Modality`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aemon.errors import ConfigError, DataError
from aemon.modalities.base import Modality
from aemon.modalities.images import ImageModality
from aemon.modalities.series import SeriesModality

if TYPE_CHECKING:
    from aemon.detector import Input
    from aemon.results import Batch

# In the order an input's modality is inferred: a 2-D array is a series, a 3-D one images.
ADAPTERS: tuple[Modality, ...] = (SeriesModality(), ImageModality())
MODALITIES = tuple(a.name for a in ADAPTERS)

__all__ = ["ADAPTERS", "MODALITIES", "Modality", "adapter_for", "adapter_of", "infer_adapter"]


def adapter_for(modality: str) -> Modality:
    """The adapter of a modality by name ("timeseries" or "image")."""
    for adapter in ADAPTERS:
        if adapter.name == modality:
            return adapter
    raise ConfigError(f"modality must be one of {MODALITIES}, got {modality!r}")


def adapter_of(batch: Batch) -> Modality:
    """The adapter of a read batch."""
    for adapter in ADAPTERS:
        if isinstance(batch, adapter.batch_type):
            return adapter
    raise DataError(f"not a batch of any modality: {type(batch).__name__}")


def infer_adapter(data: Input) -> Modality:
    """The adapter of an input given without a modality, from its type or file."""
    for adapter in ADAPTERS:
        if adapter.accepts(data):
            return adapter
    names = " or ".join(repr(m) for m in MODALITIES)
    raise DataError(
        f"cannot tell the modality from this input; pass modality={names}",
        source=Path(data) if isinstance(data, str | Path) else None,
    )
