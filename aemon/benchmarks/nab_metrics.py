"""Scoring rules for NAB-style benchmarks: Orion's overlapping-segment F1 and the NAB score.

Both work on row indices of one signal; intervals are inclusive [start, end].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aemon.errors import DataError

Interval = tuple[int, int]


@dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0


def _overlaps(a: Interval, b: Interval) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def overlap_counts(expected: Sequence[Interval], detected: Sequence[Interval]) -> Counts:
    """Orion's overlapping-segment counts (`contextual_confusion_matrix`, weighted=False).

    A labelled window overlapped by at least one detected event is one TP (however many
    events overlap it); a window overlapped by none is a FN; a detected event that overlaps
    no window is a FP. Intervals are inclusive, so events touching a window's edge count
    (Orion compares open intervals; this differs only for exact edge contact).
    """
    tp = fn = 0
    used = [False] * len(detected)
    for window in expected:
        hit = False
        for j, event in enumerate(detected):
            if _overlaps(window, event):
                hit = True
                used[j] = True
        if hit:
            tp += 1
        else:
            fn += 1
    return Counts(tp, used.count(False), fn)


# --- NAB score ----------------------------------------------------------------------------

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


def scaled_sigmoid(y: float) -> float:
    """NAB's position weight: 2 / (1 + exp(5y)) - 1, and -1 well past a window (y > 3)."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_rows(n_rows: int, fraction: float = 0.15) -> int:
    """Rows at the start of a file that NAB does not score: min(floor(0.15 n), 0.15 * 5000)."""
    return int(min(math.floor(fraction * n_rows), fraction * 5000))


@dataclass(frozen=True)
class NabFileScore:
    raw: float  # the file's contribution to the corpus score
    n_windows: int
    tp: int
    fp: int
    fn: int


def nab_file_score(
    n_rows: int,
    detections: Sequence[int] | np.ndarray,
    windows: Sequence[Interval],
    profile: str = "standard",
) -> NabFileScore:
    """One file's NAB score from detection rows (published rules, `SCOREBOARD.md`).

    Per window only the earliest detection counts, worth A_TP * sigma(y) / sigma(-1) with
    y = -(right - i + 1) / width; an undetected window costs A_FN; each detection outside all
    windows costs A_FP * sigma(y) (negative): sigma past the previous window's right edge,
    y = (i - right) / (width - 1), and -1 before any window. Rows in the probationary period
    are not scored.
    """
    weights = PROFILES[profile]
    wins = sorted((int(a), int(b)) for a, b in windows)
    probation = probation_rows(n_rows)
    best: dict[int, float] = {}
    fp_total, n_fp = 0.0, 0
    sig_left = scaled_sigmoid(-1.0)
    for i in sorted({int(d) for d in detections}):
        if i < probation or i >= n_rows:
            continue
        inside = next((k for k, (a, b) in enumerate(wins) if a <= i <= b), None)
        if inside is not None:
            a, b = wins[inside]
            if inside not in best:  # detections are in time order: the first is the earliest
                y = -(b - i + 1) / (b - a + 1)
                best[inside] = weights["tp"] * scaled_sigmoid(y) / sig_left
            continue
        before = [(a, b) for a, b in wins if b < i]
        if before:
            a, b = before[-1]
            width = b - a + 1
            y = (i - b) / max(width - 1, 1)
            fp_total += weights["fp"] * scaled_sigmoid(y)
        else:
            fp_total += weights["fp"] * -1.0
        n_fp += 1
    n_fn = len(wins) - len(best)
    raw = sum(best.values()) - weights["fn"] * n_fn + fp_total
    return NabFileScore(raw, len(wins), len(best), n_fp, n_fn)


def nab_normalized(file_scores: Sequence[NabFileScore], profile: str = "standard") -> float:
    """Corpus score normalised so the null detector scores 0 and the perfect one 100."""
    weights = PROFILES[profile]
    n_windows = sum(f.n_windows for f in file_scores)
    raw = sum(f.raw for f in file_scores)
    null = -weights["fn"] * n_windows
    perfect = weights["tp"] * n_windows
    if perfect == null:
        raise DataError("the NAB score needs at least one labelled window")
    return 100.0 * (raw - null) / (perfect - null)
