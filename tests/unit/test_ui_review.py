"""The review pages' pure parts: events from stored anomalies, chart envelopes and labels,
redirect targets and the sign-in keys (the pages themselves: tests/integration/test_ui.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aemon.store import Anomaly
from aemon.ui.app import Auth, _local_path, allowed_hosts_for
from aemon.ui.review import envelope, group_events, plot_text, series_figure

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _anomaly(i: int, minute: int, score: float, event: int, errors: dict[str, float]) -> Anomaly:
    details: dict[str, Any] = {"event_id": event, "column_errors": errors}
    stamp = T0 + timedelta(minutes=minute)
    return Anomaly(i, 1, stamp.isoformat(), stamp, score, 1.0, 0.01, "m", "1", details, T0)


def test_events_are_grouped_with_their_peak_and_column_shares() -> None:
    rows = [
        _anomaly(1, 10, 2.0, 0, {"a": 3.0, "b": 1.0}),
        _anomaly(2, 11, 5.0, 0, {"a": 1.0, "b": 3.0}),
        _anomaly(3, 50, 1.5, 1, {"a": 0.0, "b": 2.0}),
    ]
    first, second = group_events(rows, {2: "false_positive"})
    assert (first.number, first.n_points, first.peak.id, first.verdict) == (1, 2, 2, "false_positive")
    assert first.start == T0 + timedelta(minutes=10) and first.end == T0 + timedelta(minutes=11)
    assert first.contributions == pytest.approx({"a": 0.5, "b": 0.5})
    assert (second.number, second.top_column, second.verdict) == (2, "b", None)


def test_envelope_keeps_every_spike_and_bounds_the_points() -> None:
    y = np.sin(np.arange(100_000) / 50)
    y[77_777], y[12_345] = 40.0, -30.0
    xs, ys = envelope(np.arange(len(y)), y, limit=1_000)
    assert len(ys) <= 1_002 and ys.max() == 40.0 and ys.min() == -30.0
    assert (np.diff(xs) > 0).all()  # still in order: a line, not a scribble


def test_user_strings_reach_plotly_as_text() -> None:
    assert plot_text("<b>cpu</b>") == "&lt;b&gt;cpu&lt;/b&gt;"
    x = np.arange(10)
    fig = series_figure(["<b>cpu</b>"], np.zeros((10, 1)), x, np.ones(10), 2.0, [])
    assert fig["layout"]["yaxis"]["title"]["text"] == "&lt;b&gt;cpu&lt;/b&gt;"
    assert fig["layout"]["yaxis2"]["type"] == "log"  # the score panel


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/anomalies/3", "/anomalies/3"),
        ("//evil.example/x", "/batches"),  # protocol-relative: another site
        ("https://evil.example", "/batches"),
        ("/\\evil.example", "/batches"),  # browsers read a backslash as a slash
        ("", "/batches"),
    ],
)
def test_redirects_stay_inside_the_app(target: str, expected: str) -> None:
    assert _local_path(target) == expected


def test_sign_in_keys_are_derived_from_the_token_and_not_the_token() -> None:
    auth = Auth("t0ken")
    assert auth.session and auth.csrf and len({auth.session, auth.csrf, "t0ken"}) == 3
    assert Auth("t0ken").session == auth.session != Auth("other").session
    assert auth.token_ok("t0ken") and not auth.token_ok("t0ken ") and not Auth(None).token_ok("")
    assert not Auth(None).enabled


def test_loopback_servers_answer_only_to_loopback_names() -> None:
    assert "evil.example" not in allowed_hosts_for("127.0.0.1")
    assert "localhost" in allowed_hosts_for("127.0.0.1")
    assert allowed_hosts_for("0.0.0.0") == ["*"]


def test_a_batch_file_is_found_where_scored_or_in_done_and_only_with_its_content(
    tmp_path: Path,
) -> None:
    from aemon.batches import batch_sha256
    from aemon.store import AnomalyStore, Batch
    from aemon.ui.review import Review

    inbox = tmp_path / "inbox"
    (inbox / "done").mkdir(parents=True)
    source = inbox / "a.csv"
    source.write_text("timestamp,x\n2026-01-01,1\n")
    sha = batch_sha256(source)

    def batch(i: int) -> Batch:
        return Batch(i, str(source), sha, "m", "1", "done", 1, 0, None, T0, T0)

    with AnomalyStore(f"sqlite:///{tmp_path / 'aemon.db'}") as store:
        review = Review(store, tmp_path / "reports", lambda ref: (None, None))
        assert review.batch_file(batch(1)) == source
        moved = inbox / "done" / "a.20260101T000000000000.csv"  # move_batch's name when a.csv was taken
        (inbox / "done" / "a.csv").write_text("other content\n")
        source.rename(moved)
        assert review.batch_file(batch(2)) == moved
        moved.write_text("changed\n")
        assert review.batch_file(batch(3)) is None
