"""The shape of a drift profile: at most DEFAULT_SAMPLE_SIZE rows (sampled records), and
columns in three groups: **input** (a series' value columns or image statistics), **latent**
(`latent_0` … `latent_{k-1}`, the encoder's code) and **score**."""

from __future__ import annotations

import re

import pandas as pd

SCORE_COLUMN = "score"
LATENT_PREFIX = "latent_"
GROUPS = ("input", "latent", "score")
DEFAULT_SAMPLE_SIZE = 2_000
_LATENT_RE = re.compile(rf"^{LATENT_PREFIX}\d+$")


def column_group(name: str) -> str:
    """'score', 'latent' or 'input', from a profile column's name."""
    if name == SCORE_COLUMN:
        return "score"
    if _LATENT_RE.match(name):
        return "latent"
    return "input"


def input_name(name: str) -> str:
    # A value column must not pass for the score or a latent column.
    return f"input_{name}" if column_group(name) != "input" else name


def statistic_columns(profile: pd.DataFrame) -> list[str]:
    """The columns the drift statistic reads: input and latent, not the score (the score has
    its own calibrated check, `check_flag_rate`, and the reference's scores are held-out ones
    that slices of the training data cannot reproduce)."""
    return [str(c) for c in profile.columns if column_group(str(c)) != "score"]
