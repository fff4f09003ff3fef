"""Benchmark metrics on toy cases with known answers: Orion's overlap F1, the NAB score, AUROC."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aemon.benchmarks import run_benchmark
from aemon.benchmarks.common import f1_from_counts, progress, resolve_data_dir
from aemon.benchmarks.nab import SignalOutcome, budget_ceiling
from aemon.benchmarks.nab_metrics import (
    Counts,
    nab_file_score,
    nab_normalized,
    overlap_counts,
    probation_rows,
    scaled_sigmoid,
)
from aemon.errors import ConfigError


@pytest.mark.parametrize(
    ("windows", "events", "expected"),
    [
        ([(10, 20)], [(15, 16)], Counts(1, 0, 0)),  # one event inside one window
        ([(10, 20)], [], Counts(0, 0, 1)),  # nothing detected: a miss
        ([], [(3, 4)], Counts(0, 1, 0)),  # no window: every event is a false alarm
        ([(10, 20)], [(12, 12), (18, 19)], Counts(1, 0, 0)),  # two events in one window: one TP, no FP
        ([(10, 20)], [(0, 2), (30, 31)], Counts(0, 2, 1)),  # both outside
        ([(10, 20), (30, 40)], [(18, 32)], Counts(2, 0, 0)),  # one long event covers two windows
        ([(10, 20)], [(20, 25)], Counts(1, 0, 0)),  # touching the right edge counts (inclusive)
        ([(10, 20)], [(5, 10)], Counts(1, 0, 0)),  # touching the left edge counts
        ([(10, 20)], [(21, 25)], Counts(0, 1, 1)),  # one row past the edge does not
        ([(10, 20), (30, 40)], [(15, 15), (50, 55)], Counts(1, 1, 1)),
    ],
)
def test_overlap_counts(
    windows: list[tuple[int, int]], events: list[tuple[int, int]], expected: Counts
) -> None:
    assert overlap_counts(windows, events) == expected


def test_counts_pool_and_f1() -> None:
    pooled = Counts(1, 1, 0) + Counts(1, 0, 2)
    assert pooled == Counts(2, 1, 2)
    assert pooled.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert pooled.precision == pytest.approx(2 / 3) and pooled.recall == pytest.approx(0.5)
    assert Counts().f1 == 0.0
    assert f1_from_counts(2, 1, 2) == pytest.approx(pooled.f1)


def test_scaled_sigmoid_shape() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.9866, abs=1e-4)  # left edge of a window
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)  # right edge
    assert scaled_sigmoid(3.5) == -1.0  # far past a window
    assert scaled_sigmoid(0.5) < 0


def test_probation_period() -> None:
    assert probation_rows(1000) == 150
    assert probation_rows(100_000) == 750  # capped at 0.15 * 5000


# Two files: 4000 rows each, windows well after the probationary period (600 rows).
FILES = [(4000, [(1000, 1199)]), (4000, [(2000, 2099), (3000, 3099)])]


def _score(detections: list[list[int]], profile: str = "standard") -> float:
    scores = [nab_file_score(n, d, w, profile) for (n, w), d in zip(FILES, detections, strict=True)]
    return nab_normalized(scores, profile)


@pytest.mark.parametrize("profile", ["standard", "reward_low_FP_rate", "reward_low_FN_rate"])
def test_nab_perfect_and_null(profile: str) -> None:
    perfect = [[w[0] for w in wins] for _, wins in FILES]  # first row of every window
    assert _score(perfect, profile) == pytest.approx(100.0)
    assert _score([[], []], profile) == pytest.approx(0.0)


def test_nab_early_beats_late() -> None:
    early = _score([[1000], [2000, 3000]])
    late = _score([[1190], [2090, 3090]])
    assert 0 < late < early <= 100


def test_nab_only_the_first_detection_in_a_window_counts() -> None:
    assert _score([[1000, 1050, 1100], [2000, 3000]]) == pytest.approx(100.0)


def test_nab_false_positives_cost_and_decay_after_a_window() -> None:
    one = nab_file_score(4000, [1000], [(1000, 1199)])
    assert one.raw == pytest.approx(1.0) and (one.tp, one.fp, one.fn) == (1, 0, 0)
    before = nab_file_score(4000, [1000, 700], [(1000, 1199)])  # before any window: full penalty
    assert before.raw == pytest.approx(1.0 - 0.11) and before.fp == 1
    just_after = nab_file_score(4000, [1000, 1201], [(1000, 1199)])
    far_after = nab_file_score(4000, [1000, 3500], [(1000, 1199)])
    assert far_after.raw == pytest.approx(1.0 - 0.11)
    assert far_after.raw < just_after.raw < 1.0
    in_probation = nab_file_score(4000, [10], [(1000, 1199)])
    assert in_probation.fp == 0 and in_probation.raw == pytest.approx(-1.0)


def test_nab_needs_windows() -> None:
    with pytest.raises(ValueError, match="window"):
        nab_normalized([nab_file_score(100, [50], [])])


def test_unknown_suite_and_missing_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="suite"):
        run_benchmark("nope")
    with pytest.raises(ConfigError, match="never downloads"):
        run_benchmark("nab", data_dir=tmp_path / "missing")
    monkeypatch.setenv("AEMON_BENCH_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path.resolve()


def test_progress_prints_one_line_per_item_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert list(progress([10, 20, 30], "digits")) == [10, 20, 30]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" done")[0] for line in lines] == ["digits: 1/3", "digits: 2/3", "digits: 3/3"]
    assert list(progress(iter([1]), "quiet", enabled=False)) == [1]
    assert capsys.readouterr().err == ""


def test_the_budget_ceiling_counts_the_events_a_budget_allows_each_signal() -> None:
    def signal(days: float, windows: list[tuple[int, int]]) -> SignalOutcome:
        span = pd.Timedelta(days=days)
        return SignalOutcome("c", "s", 100, windows, [], [], 0.0, np.zeros(100), span, 4)

    # 14 days less one 5-minute step: one event at 1/week; 16 days: two; 4 days: none.
    two_weeks = signal(14 - 5 / 1440, [(10, 20), (50, 60)])
    longer = signal(16, [(10, 20)])
    short = signal(4, [(10, 20)])
    assert budget_ceiling([two_weeks, longer, short], "1/week") == Counts(2, 0, 2)
    assert budget_ceiling([two_weeks], "2/week") == Counts(2, 0, 0)
