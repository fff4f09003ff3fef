"""Soak: `aemon serve --every 5` on PostgreSQL for AEMON_SOAK_SECONDS (default 600) while
batches keep arriving, one in ten of them bad. Not run by default (`-m soak`):

    AEMON_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        pytest -m soak tests/integration/test_serve_soak.py -s

Checks: every batch that arrived is accounted for (done/ or quarantine/, and one row in the
batches table), the memory of serve's process tree stays flat once warm, and no process is
left after serve stops. Prints the figures.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from aemon.synthetic import make_series

pytestmark = [pytest.mark.soak, pytest.mark.postgres]


def _tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / 2**20


def test_serve_for_ten_minutes(tmp_path: Path, postgres_admin_url: str) -> None:
    import psutil

    seconds = float(os.environ.get("AEMON_SOAK_SECONDS", "600"))
    name = f"aemon_soak_{secrets.token_hex(4)}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    db_url = sa.make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    env = {**os.environ, "AEMON_HOME": str(tmp_path / "home"), "AEMON_DATABASE_URL": db_url}
    env.pop("PREFECT_API_URL", None)
    aemon = [sys.executable, "-m", "flows.cli"]
    reference, _, _ = make_series(3000, 3, seed=0)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    trained = subprocess.run(
        [*aemon, "train", str(tmp_path / "reference.csv"), "--name", "soak", "--epochs", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert trained.returncode == 0, trained.stderr
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [*aemon, "serve", "--inbox", str(inbox), "--model", "soak", "--every", "5"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    sent: list[str] = []
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            path = inbox / f".b{i:05d}.csv"  # written under a hidden name, then renamed
            if i % 10 == 9:
                path.write_text(f"timestamp,wrong\n2026-01-01,{i}\n")  # content of its own
            else:
                make_series(288, 3, seed=1000 + i)[0].to_csv(path, index=False)
            path.rename(inbox / path.name[1:])
            sent.append(path.name[1:])
            i += 1
            stop.wait(3)

    feeder = threading.Thread(target=feed, daemon=True)
    rss: list[tuple[float, float]] = []
    start = time.monotonic()
    try:
        feeder.start()
        while time.monotonic() - start < seconds:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            rss.append((time.monotonic() - start, _tree_rss_mb(serve.pid)))
            time.sleep(10)
        stop.set()
        feeder.join()
        deadline = time.monotonic() + 300
        while any(p.is_file() for p in inbox.iterdir()) and time.monotonic() < deadline:
            time.sleep(2)
        children = [p.pid for p in psutil.Process(serve.pid).children(recursive=True)]
    finally:
        stop.set()
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
        log.close()
    time.sleep(2)
    left = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]

    done = sorted(p.name for p in (inbox / "done").iterdir())
    quarantined = sorted(p.name for p in (inbox / "quarantine").iterdir())
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        statuses = dict(conn.exec_driver_sql("SELECT status, count(*) FROM batches GROUP BY status").all())
    engine.dispose()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()

    warm = [mb for t, mb in rss if t > seconds / 3]
    first, last = warm[: len(warm) // 2], warm[len(warm) // 2 :]
    growth = sum(last) / len(last) - sum(first) / len(first)
    print(  # noqa: T201  # the soak's figures, for the closing note
        f"\nsoak: {seconds:.0f} s, {len(sent)} batches sent ({len(done)} done, {len(quarantined)} "
        f"quarantined), batches table {statuses}; serve tree RSS warm first half "
        f"{sum(first) / len(first):.0f} MB, second half {sum(last) / len(last):.0f} MB "
        f"(growth {growth:+.0f} MB), max {max(mb for _, mb in rss):.0f} MB; processes left {left}"
    )
    assert sorted(done + quarantined) == sorted(sent)
    assert len(quarantined) == len([s for s in sent if int(s[1:6]) % 10 == 9])
    assert statuses == {"done": len(done), "quarantined": len(quarantined)}
    assert growth < 50, f"serve's memory grew by {growth:.0f} MB"
    assert not left, f"processes left after serve stopped: {left}"
