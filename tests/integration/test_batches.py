"""A batch becomes database rows exactly once; a bad batch is quarantined, never lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from aemon import DataError, Detector
from aemon.batches import batch_sha256, list_new_batches, move_batch, score_batch_into_store
from aemon.store import AnomalyStore
from aemon.synthetic import make_images, make_series


@pytest.fixture(scope="module")
def series_detector() -> Detector:
    reference, _, _ = make_series(2_000, 2, seed=1)
    return Detector(window=16, epochs=3, samples_per_epoch=1024, progress=False).fit(reference)


def test_batch_rows_are_written_once(series_detector: Detector, store: AnomalyStore, tmp_path: Path) -> None:
    batch, _, _ = make_series(1_000, 2, seed=2, incidents=("spike", "level_shift"))
    path = tmp_path / "b.csv"
    batch.to_csv(path, index=False)
    first = score_batch_into_store(store, series_detector, path, model_name="m", model_version="1")
    assert first.status == "done" and first.n_records == 1_000 and first.n_flagged > 0
    rows = store.list_anomalies(batch_id=first.batch_id, limit=None)
    assert len(rows) == first.n_flagged
    assert all(r.score > r.threshold and r.timestamp is not None for r in rows)
    assert {"event_id", "column_errors"} <= set(rows[0].details)
    # Not monitored yet (the flow marks it after its drift report and alert): a second run
    # scores it again in memory for that, and writes no row.
    resumed = score_batch_into_store(store, series_detector, path, model_name="m", model_version="1")
    assert (resumed.status, resumed.resumed, resumed.batch_id) == ("done", True, first.batch_id)
    assert resumed.result is not None and resumed.n_flagged == first.n_flagged
    store.mark_monitored(first.batch_id)
    again = score_batch_into_store(store, series_detector, path, model_name="m", model_version="1")
    assert again.status == "skipped" and again.result is None
    assert len(store.list_anomalies(limit=None)) == first.n_flagged
    # another model version scores the same content anew
    other = score_batch_into_store(store, series_detector, path, model_name="m", model_version="2")
    assert other.status == "done" and other.batch_id != first.batch_id


def test_a_batch_filed_away_by_another_worker_before_it_is_read_is_deferred(
    series_detector: Detector, store: AnomalyStore, tmp_path: Path
) -> None:
    """Two workers list one inbox; one files a batch away before the other reads it. The
    other records nothing and does not fail; outside an inbox, a missing file is an error."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    gone = inbox / "b.csv"  # listed, then moved to done/ by the other worker
    outcome = score_batch_into_store(
        store, series_detector, gone, model_name="m", model_version="1", inbox=inbox
    )
    assert outcome.status == "deferred" and "moved away" in outcome.error
    assert store.list_batches() == []
    with pytest.raises(DataError, match=r"b\.csv: batch not found"):
        score_batch_into_store(store, series_detector, gone, model_name="m", model_version="1")
    (inbox / "dangling.csv").symlink_to(inbox / ".never.csv")  # a dangling link stays an error
    with pytest.raises(DataError, match="batch not found"):
        score_batch_into_store(
            store, series_detector, inbox / "dangling.csv", model_name="m", model_version="1", inbox=inbox
        )


def test_malformed_batch_is_quarantined_with_its_reason(
    series_detector: Detector, store: AnomalyStore, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,metric_0\n2026-01-01,1.0\n2026-01-02,2.0\n")  # metric_1 missing
    out = score_batch_into_store(store, series_detector, path, model_name="m", model_version="1")
    assert out.status == "quarantined" and "metric_1" in (out.error or "")
    batch = store.get_batch(out.batch_id or -1)
    assert batch.status == "quarantined" and "metric_1" in (batch.error or "")
    assert store.list_anomalies(limit=None) == []


def test_image_batch_gets_error_maps(store: AnomalyStore, tmp_path: Path) -> None:
    train, _ = make_images(150, size=12, seed=0)
    det = Detector(epochs=3, samples_per_epoch=1024, progress=False).fit(train)
    images, _ = make_images(40, size=12, seed=1)
    images[:4] = 255  # blank white frames: far outside anything seen in training
    folder = tmp_path / "batch"
    for i, img in enumerate(images):
        (folder / f"g{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"g{i % 2}" / f"{i:03d}.png")
    out = score_batch_into_store(
        store, det, folder, model_name="img", model_version="1", error_map_root=tmp_path / "reports"
    )
    assert out.status == "done" and out.n_records == 40
    rows = store.list_anomalies(batch_id=out.batch_id, limit=None)
    assert rows and all(Path(r.details["error_map"]).is_file() for r in rows)
    assert all(r.record_key.startswith(("g0/", "g1/")) for r in rows)


def test_inbox_listing_and_moves(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "done").mkdir(parents=True)
    (inbox / ".partial.csv").write_text("x")
    (inbox / "a.csv").write_text("a")
    assert list_new_batches(inbox) == [inbox / "a.csv"]
    sha = batch_sha256(inbox / "a.csv")
    moved = move_batch(inbox / "a.csv", inbox, "done")
    assert moved == inbox / "done" / "a.csv" and batch_sha256(moved) == sha
    (inbox / "a.csv").write_text("a")
    second = move_batch(inbox / "a.csv", inbox, "done")  # same name: kept, not overwritten
    assert second != moved and second.exists() and moved.exists()
    folder = tmp_path / "f"
    (folder / "s").mkdir(parents=True)
    (folder / "s" / "x.png").write_bytes(b"1")
    before = batch_sha256(folder)
    (folder / "s" / "x.png").write_bytes(b"2")
    assert batch_sha256(folder) != before
