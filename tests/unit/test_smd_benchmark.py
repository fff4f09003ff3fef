"""SMD suite pieces on toy data: incident segments from labels, event counting, the loader."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aemon.benchmarks.nab_metrics import Counts
from aemon.benchmarks.smd import (
    START,
    Machine,
    Outcome,
    _quiet_share,
    evaluate,
    load_machine,
    quiet_columns,
    segments_from_labels,
    spans,
    summarize_smd,
)
from aemon.calibration import find_events


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([0, 0, 0], []),
        ([1, 1, 0, 0, 1], [(0, 1), (4, 4)]),
        ([0, 1, 1, 1, 0, 1, 0], [(1, 3), (5, 5)]),  # adjacent runs stay separate incidents
    ],
)
def test_segments_are_runs_of_labelled_rows(labels: list[int], expected: list[tuple[int, int]]) -> None:
    assert segments_from_labels(np.array(labels)) == expected


def test_events_counted_by_overlap_and_ranked() -> None:
    labels = np.zeros(100, dtype=bool)
    labels[10:20] = labels[50:55] = labels[80:90] = True
    segments = segments_from_labels(labels)
    flags = np.zeros(100, dtype=bool)
    flags[[12, 15, 30, 53, 70, 72]] = True
    # gap 3 joins 70 and 72 into one false event; 12 and 15 into one event in the first segment
    events = spans(find_events(flags, 3))
    assert events == [(12, 15), (30, 30), (53, 53), (70, 72)]
    out = evaluate(segments, events, labels, labels.astype(float), 1.0, 0.5)
    assert out.counts == Counts(tp=2, fp=2, fn=1)
    assert out.n_events == 4 and out.auprc == pytest.approx(1.0) and out.auroc == pytest.approx(1.0)
    # the same flags without joining: every run of flagged points is an event
    assert evaluate(segments, spans(find_events(flags, 0)), labels, 1.0 - labels, 0, 0).counts == Counts(
        2, 3, 1
    )


def test_spans_of_score_result_events() -> None:
    events = pd.DataFrame({"start_index": [3, 40], "end_index": [7, 41]})
    assert spans(events) == [(3, 7), (40, 41)] and spans(None) == []


def test_load_machine_continues_time_after_train(tmp_path: Path) -> None:
    root = tmp_path / "smd"
    for sub in ("train", "test", "test_label"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    train, test = rng.random((50, 4)), rng.random((40, 4))
    train[:, 2] = 0.0  # constant in training
    for sub, values in (("train", train), ("test", test)):
        with gzip.open(root / sub / "m.txt.gz", "wt") as fh:
            np.savetxt(fh, values, delimiter=",", fmt="%.6f")
    labels = np.zeros(40, dtype=int)
    labels[5:9] = 1
    np.savetxt(root / "test_label" / "m.txt", labels, fmt="%d")
    m = load_machine(tmp_path, "m")
    assert list(m.train.columns) == ["timestamp", "m01", "m02", "m03", "m04"] and m.features == [
        "m01",
        "m02",
        "m03",
        "m04",
    ]
    assert m.train["timestamp"].iloc[0] == START
    assert m.test["timestamp"].iloc[0] - m.train["timestamp"].iloc[-1] == pd.Timedelta(minutes=1)
    assert m.segments == [(5, 8)] and m.labels.sum() == 4
    assert quiet_columns(m.train, m.features, 0.0) == ["m03"]
    short = load_machine(tmp_path, "m", max_rows=10)
    assert len(short.train) == len(short.test) == 10 and short.segments == [(5, 8)]


def test_summary_table_and_quiet_column_share() -> None:
    rng = np.random.default_rng(1)
    train = pd.DataFrame({"timestamp": pd.date_range(START, periods=50, freq="min"), "a": rng.random(50)})
    train["q"] = 0.5  # constant in training
    labels = np.zeros(20, dtype=bool)
    labels[2:4] = True
    m = Machine("toy", train, train.iloc[:20], labels, segments_from_labels(labels))
    errors = np.ones((20, 2))
    errors[10:13, 1] = 3.0  # the quiet column drives the false event
    info = _quiet_share(m, errors, ("a", "q"), [(2, 3), (10, 12)])
    assert info["quiet_columns"] == info["constant_columns"] == ["q"]
    assert info["quiet_error_share"]["incidents"] == pytest.approx(0.5)
    assert info["quiet_error_share"]["false_events"] == pytest.approx(0.75)
    assert info["top_columns_in_false_events"][0] == "q"
    info |= {"train_rows": 50, "test_rows": 20, "columns": ["a", "q"], "segments": m.segments}
    out = Outcome(Counts(1, 1, 0), 2, 0.9, 0.95, 1.0, 0.5)
    result = summarize_smd({"toy": {"aemon": out, "PyOD AutoEncoder": out}}, info={"toy": info}, args={})
    assert "| toy | aemon | 0.667 | 1/1/0 | 2 | 0.900 | 0.950 | 1.5 |" in result.markdown
    assert "1 of 2 columns (1 constant)" in result.markdown and "75%" in result.markdown
    assert result.record["event_counts"]["aemon"] == {"tp": 1, "fp": 1, "fn": 0}
