"""Files picked up mid-write: an inbox entry is scored only once it has settled (no change for
AEMON_SETTLE_SECONDS), a file that changes while it is read is not recorded, and one that
changes after it was read is not filed as done. Real writer processes, real flows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from reliability_helpers import incident_batch

from aemon import ConfigError, config, registry
from aemon.batches import list_new_batches, score_batch_into_store
from aemon.data.source import file_sha256
from aemon.store import AnomalyStore

# Copies SRC into DST a few lines at a time, flushing each time, like a slow producer.
SLOW_COPY = """
import sys, time
src, dst, lines, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
text = open(src).read().splitlines(keepends=True)
with open(dst, "w") as out:
    for i in range(0, len(text), lines):
        out.write("".join(text[i:i + lines]))
        out.flush()
        time.sleep(pause)
"""

# Appends a row every millisecond to DST (a series at 5-minute steps) until killed.
APPENDER = """
import sys, time
from datetime import datetime, timedelta
dst, start = sys.argv[1], datetime.fromisoformat(sys.argv[2])
with open(dst, "a") as out:
    i = 1
    while True:
        out.write(f"{start + timedelta(minutes=5 * i)},0.5,0.5\\n")
        out.flush()
        i += 1
        time.sleep(0.001)
"""


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_listing_leaves_entries_that_changed_within_the_settle_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AEMON_SETTLE_SECONDS")
    assert config.settle_seconds() == 2.0
    inbox = tmp_path / "inbox"
    (inbox / "folder").mkdir(parents=True)
    for name in ("fresh.csv", "old.csv", "folder/image.png"):
        (inbox / name).write_text("x")
    _age(inbox / "old.csv", 3)
    _age(inbox / "folder", 3)
    assert list_new_batches(inbox) == [inbox / "old.csv"]  # the folder holds a fresh file

    _age(inbox / "fresh.csv", 3)
    _age(inbox / "folder" / "image.png", 3)
    assert set(list_new_batches(inbox)) == {inbox / "old.csv", inbox / "fresh.csv", inbox / "folder"}
    assert list_new_batches(inbox, settle_seconds=10) == []

    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv("AEMON_SETTLE_SECONDS", bad)
        with pytest.raises(ConfigError, match="AEMON_SETTLE_SECONDS"):
            list_new_batches(inbox)


def test_a_slow_writer_is_never_scored_half_written(
    model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: str
) -> None:
    """score-inbox ticks while a producer writes a 1,500-row file 50 rows at a time, under
    its final name: no tick scores it before it is complete, and then all of it is scored once."""
    from flows.score import score_inbox

    monkeypatch.setenv("AEMON_SETTLE_SECONDS", "2")
    source = incident_batch(tmp_path / "source.csv", n=1_500)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    target = inbox / "slow.csv"
    writer = subprocess.Popen([sys.executable, "-c", SLOW_COPY, str(source), str(target), "50", "0.2"])
    try:
        while not target.exists() or target.read_text().count("\n") < 200:
            assert writer.poll() is None, "the writer ended early"
            time.sleep(0.05)
        ticks_while_writing = []
        while writer.poll() is None:
            ticks_while_writing.append(score_inbox(str(inbox), model))
        assert writer.wait() == 0
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert ticks_while_writing and all(tick == [] for tick in ticks_while_writing)

    deadline = time.monotonic() + 120
    done: list[dict[str, object]] = []
    while not done:
        assert time.monotonic() < deadline, "the finished file was never scored"
        done = score_inbox(str(inbox), model)
    [summary] = done
    assert summary["status"] == "done" and summary["n_records"] == 1_500
    assert not target.exists() and not (inbox / "quarantine").exists()
    [filed] = (inbox / "done").iterdir()
    assert filed.read_bytes() == source.read_bytes()
    [batch] = AnomalyStore().list_batches()
    assert batch.content_sha256 == file_sha256(filed) and batch.n_records == 1_500


def test_a_file_that_changes_while_it_is_read_is_not_recorded(
    model: str, tmp_path: Path, aemon_home: Path
) -> None:
    """A producer appends a row every millisecond while the batch is read: nothing is
    recorded (not done with the rows read so far, not quarantined for a line cut short)."""
    frame = incident_batch(tmp_path / "big.csv", n=60_000)
    last = pd.read_csv(frame).iloc[-1, 0]
    detector, ref = registry.load_detector(model)
    appender = subprocess.Popen([sys.executable, "-c", APPENDER, str(frame), str(last)])
    try:
        size = frame.stat().st_size
        while frame.stat().st_size == size:  # the producer is at work
            time.sleep(0.01)
        with AnomalyStore() as store:
            outcome = score_batch_into_store(
                store, detector, frame, model_name=ref.name, model_version=ref.version
            )
            assert outcome.status == "deferred", outcome.summary()
            assert "changed (still being written?) while it was read" in (outcome.error or "")
            assert store.list_batches() == []
    finally:
        appender.kill()
        appender.wait()


def test_a_file_that_changes_after_it_is_read_stays_in_the_inbox(
    model: str, tmp_path: Path, prefect_harness: str
) -> None:
    """The content filed in done/ is the content scored: a file written to between its
    scoring and its move stays in the inbox, and the next run scores what it holds then."""
    from flows.score import file_away, load_model, score_and_store, score_inbox

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = incident_batch(inbox / "late.csv", n=600)
    detector, ref = load_model.fn(model)
    with AnomalyStore() as store:
        first = score_and_store.fn(path, detector, ref, store, inbox)
    assert first.status == "done"
    stamp = pd.read_csv(path).iloc[-1, 0]
    with path.open("a") as out:  # the producer adds a row meanwhile
        out.write(f"{pd.Timestamp(stamp) + pd.Timedelta(minutes=5)},0.5,0.5\n")
    moved, why = file_away.fn(path, inbox, first)
    assert moved is None and why is not None and "changed after it was read" in why
    assert path.exists() and not (inbox / "done").exists()

    [second] = score_inbox(str(inbox), model)
    assert second["status"] == "done" and second["n_records"] == 601
    assert second["batch_id"] != first.batch_id and not path.exists()
    [filed] = (inbox / "done").iterdir()
    assert AnomalyStore().get_batch(second["batch_id"]).content_sha256 == file_sha256(filed)
