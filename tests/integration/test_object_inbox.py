"""An inbox in an object store: score-inbox on s3://bucket/prefix against a real S3-compatible
server (moto's standalone server, a process on 127.0.0.1, stopped by its PID). The same rules
as a folder: hidden names ignored, done/ and quarantine/ prefixes, nothing deleted, each
content scored once."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from aemon import Detector, registry
from aemon.synthetic import make_series


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """moto's S3 server on a free port; the AWS_* settings point every client at it."""
    port = _free_port()
    log = (tmp_path / "moto.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.5)
        for key, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.usefixtures("mlflow_store", "prefect_harness")
def test_score_inbox_on_an_s3_prefix(s3: str) -> None:
    import s3fs

    from flows.score import score_inbox

    reference, _, _ = make_series(2000, 2, seed=0)
    det = Detector(window=16, epochs=2, progress=False).fit(reference)
    registry.log_training(det, name="objects", data_source="test")

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3})
    fs.mkdir("inbox-bucket")
    good = [make_series(400, 2, seed=s)[0].to_csv(index=False).encode() for s in (1, 2)]
    fs.pipe(
        {
            "inbox-bucket/batches/a.csv": good[0],
            "inbox-bucket/batches/b.csv": good[1],
            "inbox-bucket/batches/bad.csv": b"timestamp,other\n2026-01-01,1\n",
            "inbox-bucket/batches/.still-uploading.csv": good[0],
            "inbox-bucket/elsewhere.csv": good[1],  # beside the inbox, not in it
        }
    )
    url = "s3://inbox-bucket/batches"

    summaries = {Path(s["source"]).name: s for s in score_inbox(url, "objects")}
    assert {n: s["status"] for n, s in summaries.items()} == {
        "a.csv": "done",
        "b.csv": "done",
        "bad.csv": "quarantined",
    }
    assert summaries["a.csv"]["source"] == f"{url}/a.csv"
    assert summaries["bad.csv"]["moved_to"] == f"{url}/quarantine/bad.csv"
    listing = sorted(p.removeprefix("inbox-bucket/") for p in fs.find("inbox-bucket", refresh=True))
    assert listing == [
        "batches/.still-uploading.csv",
        "batches/done/a.csv",
        "batches/done/b.csv",
        "batches/quarantine/bad.csv",
        "elsewhere.csv",
    ]
    assert fs.cat("inbox-bucket/batches/done/a.csv") == good[0]  # filed as it came

    # The same content again under a new name: scored once (skipped), then filed as done;
    # the bad content again: quarantined again.
    fs.pipe(
        {
            "inbox-bucket/batches/a-again.csv": good[0],
            "inbox-bucket/batches/bad2.csv": fs.cat("inbox-bucket/batches/quarantine/bad.csv"),
        }
    )
    again = {Path(s["source"]).name: s["status"] for s in score_inbox(url, "objects")}
    assert again == {"a-again.csv": "skipped", "bad2.csv": "quarantined"}
    fs.invalidate_cache()  # the listing above is cached; the flow moved objects since
    assert fs.exists("inbox-bucket/batches/quarantine/bad2.csv")
    assert fs.exists("inbox-bucket/batches/done/a-again.csv")
    assert score_inbox(url, "objects") == []  # nothing new


@pytest.mark.usefixtures("prefect_harness")
def test_a_missing_bucket_is_one_line(s3: str) -> None:
    from aemon.errors import DataError
    from flows.score import score_inbox

    with pytest.raises(DataError, match="inbox not found"):
        score_inbox("s3://no-such-bucket/inbox", "objects")


@pytest.mark.usefixtures("mlflow_store")
def test_aemon_serve_watches_an_s3_prefix(s3: str, tmp_path: Path) -> None:
    """`aemon serve --inbox s3://…` as a user starts it: a batch put in the bucket ends up in
    done/ there; SIGTERM stops serve."""
    import contextlib
    import os
    import signal

    import s3fs

    reference, _, _ = make_series(2000, 2, seed=0)
    registry.log_training(
        Detector(window=16, epochs=2, progress=False).fit(reference), name="served", data_source="t"
    )
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3})
    fs.mkdir("served-bucket")
    fs.pipe({"served-bucket/in/a.csv": make_series(300, 2, seed=3)[0].to_csv(index=False).encode()})
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "serve",
            "--inbox",
            "s3://served-bucket/in",
            "-m",
            "served",
            "--every",
            "2",
        ],
        env={**os.environ, "AEMON_SETTLE_SECONDS": "0"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not fs.exists("served-bucket/in/done/a.csv"):
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(1)
            fs.invalidate_cache()
    finally:
        # SIGTERM, as a service manager stops it (SIGINT is ignored by commands that a
        # non-interactive shell starts in the background, as CI may run the tests).
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=90)
        finally:
            with contextlib.suppress(ProcessLookupError):  # whatever it left, and it if it hangs
                os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=30)
            log.close()
    assert "done a.csv" in (tmp_path / "serve.log").read_text()
