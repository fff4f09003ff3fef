"""Report retention on a real store: old report folders go, recent ones and the database rows
stay, and nothing outside the reports folder is ever touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aemon.errors import ConfigError
from aemon.retention import Retention, prune_reports
from aemon.store import AnomalyStore


def _batches(store: AnomalyStore, root: Path, model: str, n: int) -> list[Path]:
    """`n` scored batches of `model`, each with a report folder and an error-map folder."""
    folders = []
    for i in range(n):
        batch = store.claim_batch(
            source=f"{model}-{i}.csv", content_sha256=f"{i:064x}", model_name=model, model_version="1"
        )
        assert batch is not None
        store.complete_batch(batch.id, [], n_records=10)
        folder = root / model / f"{batch.id}-abc"
        folder.mkdir(parents=True)
        (folder / "report.html").write_text("x" * 100)
        (root / model / str(batch.id) / "error_maps").mkdir(parents=True)
        (root / model / str(batch.id) / "error_maps" / "a.png").write_bytes(b"y" * 50)
        store.record_drift_report(
            batch.id,
            drift_detected=False,
            drifted_share=0.0,
            details={},
            html_path=str(folder / "report.html"),
            json_path=str(folder / "report.json"),
        )
        folders.append(folder)
    return folders


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", Retention(days=30)),
        ("7 days", Retention(days=7)),
        ("500", Retention(count=500)),
        ("off", Retention()),
    ],
)
def test_retention_settings(text: str, expected: Retention) -> None:
    assert Retention.parse(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-3", "30x", "0d"])
def test_a_bad_retention_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="AEMON_REPORT_RETENTION"):
        Retention.parse(text)


def test_count_keeps_each_models_newest_batches(store: AnomalyStore, tmp_path: Path) -> None:
    root = tmp_path / "reports"
    a, b = _batches(store, root, "a", 4), _batches(store, root, "b", 2)
    pruned = prune_reports(store, root, Retention(count=2), datetime.now(UTC))
    assert pruned.n_batches == 2 and pruned.n_bytes == 2 * 150
    assert [f.exists() for f in a] == [False, False, True, True] and all(f.exists() for f in b)
    assert not (root / "a" / a[0].name.split("-")[0]).exists()  # its error maps went too
    assert len(store.list_drift_reports(limit=None)) == 6  # the rows (verdicts) stay


def test_days_remove_only_what_is_older(store: AnomalyStore, tmp_path: Path) -> None:
    root = tmp_path / "reports"
    folders = _batches(store, root, "m", 3)
    now = datetime.now(UTC)
    assert prune_reports(store, root, Retention(days=30), now).n_batches == 0
    assert prune_reports(store, root, Retention(days=30), now + timedelta(days=31)).n_batches == 3
    assert not any(f.exists() for f in folders)
    assert prune_reports(store, root, Retention(), now + timedelta(days=999)) == prune_reports(
        store, root, Retention(), now
    )


def test_nothing_outside_the_reports_folder_is_removed(store: AnomalyStore, tmp_path: Path) -> None:
    """A report path that points elsewhere (a moved AEMON_HOME, a hand-edited row) is left alone."""
    outside = tmp_path / "elsewhere"
    folders = _batches(store, outside, "m", 2)
    pruned = prune_reports(store, tmp_path / "reports", Retention(count=1), datetime.now(UTC))
    assert pruned.n_batches == 0 and all(f.exists() for f in folders)
