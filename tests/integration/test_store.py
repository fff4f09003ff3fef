"""The anomaly database on real SQLite files and PostgreSQL schemas (see conftest.py).

What the score flow relies on: a batch's rows and its `done` status commit together, a done batch
is never touched again, a process killed mid-batch leaves nothing behind, and two processes
scoring the same batch leave one set of rows.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from aemon.errors import ConfigError, StoreError
from aemon.store import AnomalyStore, Batch, anomaly_store
from aemon.store import engine as store_engine
from aemon.store import schema as store_schema
from aemon.store.values import anomaly_values

WORKER = Path(__file__).with_name("store_worker.py")
TABLES = {"alembic_version", "batches", "anomalies", "drift_reports", "feedback", "alerts"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def claim(store: AnomalyStore, name: str = "a", *, model_version: str = "1") -> Batch | None:
    return store.claim_batch(
        source=f"inbox/{name}.csv",
        content_sha256=sha(name),
        model_name="cpu",
        model_version=model_version,
    )


def claimed(store: AnomalyStore, name: str = "a", *, model_version: str = "1") -> Batch:
    batch = claim(store, name, model_version=model_version)
    assert batch is not None
    return batch


def rows(n: int, *, prefix: str = "k") -> list[dict[str, Any]]:
    return [
        {"record_key": f"{prefix}{i}", "score": 1.0 + i, "threshold": 0.5, "p_value": 0.01} for i in range(n)
    ]


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- schema -----------------------------------------------------------------------------------


def test_opening_a_new_database_creates_every_table(db_url: str) -> None:
    with AnomalyStore(db_url) as store:
        assert store.current_revision() == "0003"
    assert table_names(db_url) == TABLES
    if db_url.startswith("postgresql"):  # all in the test's schema, Alembic's table included
        engine = sa.create_engine(db_url)
        with engine.connect() as conn:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar_one()
            where = conn.exec_driver_sql(
                "SELECT DISTINCT table_schema FROM information_schema.tables "
                "WHERE table_name IN ('alembic_version', 'batches', 'anomalies')"
            ).scalars()
            assert schema.startswith("aemon_test_")
            assert schema in list(where)
        engine.dispose()


def test_the_schema_head_that_skips_alembic_is_alembics_head() -> None:
    """Opening an up-to-date store compares its revision with SCHEMA_HEAD and skips loading
    Alembic; a new migration must move SCHEMA_HEAD with it."""
    from aemon.store.engine import SCHEMA_HEAD, script_directory

    assert set(script_directory().get_heads()) == {SCHEMA_HEAD}


def test_upgrade_on_an_empty_database_then_again_is_a_no_op(db_url: str) -> None:
    with AnomalyStore(db_url) as store:
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:  # back to an empty database
            store_schema.metadata.drop_all(conn)
            conn.exec_driver_sql("DROP TABLE alembic_version")
        assert table_names(db_url) == set()
        assert store.current_revision() is None

        assert store.upgrade() == "0003"
        assert table_names(db_url) == TABLES
        batch = claimed(store)
        assert store.upgrade() == "0003"  # nothing to do: data and version untouched
        assert store.get_batch(batch.id) == batch
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [("0003",)]
        engine.dispose()


def test_migration_builds_exactly_the_tables_the_code_uses(store: AnomalyStore, db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), store_schema.metadata)
        # Alembic does not compare CHECK constraints or constraint names: do it here.
        inspector = sa.inspect(conn)
        for table in store_schema.metadata.sorted_tables:
            named = {
                str(c.name)
                for c in table.constraints
                if isinstance(c, sa.CheckConstraint | sa.UniqueConstraint)
            }
            found = {c["name"] for c in inspector.get_check_constraints(table.name)}
            found |= {c["name"] for c in inspector.get_unique_constraints(table.name)}
            assert found == named, table.name
    engine.dispose()
    assert diff == []


def test_sqlite_runs_in_wal_mode_in_a_created_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "aemon.db"
    AnomalyStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _open_when_told(path: Path, go: Any, results: Any) -> None:
    go.wait()
    try:
        conn = sqlite3.connect(path)
        store_engine._sqlite_on_connect(conn, None)
        results.put("ok")
    except sqlite3.OperationalError as exc:
        results.put(str(exc))


def test_processes_opening_a_new_sqlite_file_at_once_all_connect(tmp_path: Path) -> None:
    # Several processes switching a new file to WAL at once: SQLite refuses some of them at
    # once, busy timeout or not (about 1 round in 20 here before the retry; it failed CI once).
    context = multiprocessing.get_context("fork")
    for i in range(100):
        go, results = context.Event(), context.Queue()
        procs = [
            context.Process(target=_open_when_told, args=(tmp_path / f"{i}.db", go, results))
            for _ in range(4)
        ]
        for proc in procs:
            proc.start()
        go.set()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join()
        assert outcomes == ["ok"] * 4, f"round {i}"


def test_default_database_is_under_aemon_home(aemon_home: Path) -> None:
    with AnomalyStore() as store:
        assert store.url == f"sqlite:///{aemon_home / 'aemon.db'}"
        claimed(store)
    assert (aemon_home / "aemon.db").exists()


def test_a_database_from_a_newer_aemon_is_refused(store: AnomalyStore, db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    engine.dispose()
    with pytest.raises(StoreError, match=r"9999_future.*upgrade aemon"):
        AnomalyStore(db_url)


def test_connection_errors_name_the_url_without_its_password() -> None:
    with pytest.raises(StoreError, match="cannot connect to") as info:
        AnomalyStore("postgresql+psycopg://aemon:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in str(info.value)
    assert "aemon:***@127.0.0.1:1/nowhere" in str(info.value)


def test_unsupported_databases_are_refused() -> None:
    with pytest.raises(StoreError, match="unsupported database"):
        AnomalyStore("mysql://aemon@localhost/aemon")


# --- batches ----------------------------------------------------------------------------------


def test_claim_then_complete_stores_rows_and_done_together(store: AnomalyStore) -> None:
    batch = claimed(store)
    assert (batch.status, batch.n_flagged, batch.finished_at) == ("running", 0, None)
    assert batch.started_at.tzinfo is UTC
    flagged = [
        # a time-series point, stamped in another zone, with numpy values from the detector
        {
            "record_key": "2024-01-01T12:00",
            "timestamp": datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2))),
            "score": np.float32(3.5),
            "threshold": np.float64(1.25),
            "p_value": np.float64(0.002),
            "details": {"contribution": np.array([0.25, 0.75]), "peak": np.int64(7)},
        },
        # a naive pandas timestamp is taken as UTC; NaN in details becomes null
        {
            "record_key": "2024-01-01T13:00",
            "timestamp": pd.Timestamp("2024-01-01 13:00"),
            "score": 9.0,
            "threshold": 1.25,
            "p_value": 0.001,
            "details": {"note": float("nan")},
        },
        # an image: no timestamp, no p-value
        {"record_key": "images/cat.png", "score": 2.0, "threshold": 1.25},
    ]
    assert store.complete_batch(batch.id, flagged, n_records=100) == 3

    done = store.get_batch(batch.id)
    assert (done.status, done.n_records, done.n_flagged, done.error) == ("done", 100, 3, None)
    assert done.finished_at is not None and done.finished_at.tzinfo is UTC
    found = store.list_anomalies(batch_id=batch.id)
    assert [a.record_key for a in found] == ["2024-01-01T13:00", "2024-01-01T12:00", "images/cat.png"]
    top, point, image = found
    assert top.timestamp == datetime(2024, 1, 1, 13, tzinfo=UTC)
    assert top.details == {"note": None}
    assert image.timestamp is None and image.p_value is None and image.details == {}
    assert point.timestamp == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert point.timestamp is not None and point.timestamp.tzinfo is UTC
    assert (point.score, point.threshold, point.p_value) == (3.5, 1.25, 0.002)
    assert point.details == {"contribution": [0.25, 0.75], "peak": 7}
    assert (point.model_name, point.model_version) == ("cpu", "1")


def test_rows_are_stored_as_sqlalchemys_own_insert_stores_them(store: AnomalyStore) -> None:
    """complete_batch hands the rows to the driver itself (one executemany per chunk); the
    stored values are those SQLAlchemy's own executemany of the same rows stores."""
    flagged = [
        {
            "record_key": "2024-01-01T12:00",
            "timestamp": datetime(2024, 1, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
            "score": np.float32(3.5),
            "threshold": np.float64(1.25),
            "p_value": np.float64(0.002),
            "details": {"event_id": 3, "column_errors": {"a": 0.1, "b": np.float64(0.2)}},
        },
        {
            "record_key": "k2",
            "timestamp": pd.Timestamp("2024-01-01 13:00"),
            "score": 9.0,
            "threshold": 1.25,
            "p_value": float("nan"),
            "details": {"note": float("nan")},
        },
        {"record_key": "images/cat.png", "score": 2.0, "threshold": 1.25},
    ]
    fast, reference = claimed(store, "fast"), claimed(store, "reference")
    store.complete_batch(fast.id, flagged, n_records=10)
    table = store_schema.anomalies_table
    columns = (
        "record_key, timestamp, score, threshold, p_value, model_name, model_version, details, created_at"
    )
    with store._engine.begin() as conn:
        created = conn.scalar(sa.select(table.c.created_at).where(table.c.batch_id == fast.id).limit(1))
        common = {"batch_id": reference.id, "model_name": "cpu", "model_version": "1", "created_at": created}
        conn.execute(sa.insert(table), [anomaly_values(i, r) | common for i, r in enumerate(flagged)])
        stored = {
            b: conn.exec_driver_sql(f"SELECT {columns} FROM anomalies WHERE batch_id = {b} ORDER BY id").all()
            for b in (fast.id, reference.id)
        }
    assert len(stored[fast.id]) == 3
    assert stored[fast.id] == stored[reference.id]


def test_a_done_batch_is_never_changed_again(store: AnomalyStore) -> None:
    batch = claimed(store)
    store.complete_batch(batch.id, rows(3), n_records=10)
    before = (store.get_batch(batch.id), store.list_anomalies(limit=None))

    assert claim(store) is None
    assert store.complete_batch(batch.id, rows(5, prefix="other"), n_records=99) == 0
    store.fail_batch(batch.id, "late failure")
    assert (store.get_batch(batch.id), store.list_anomalies(limit=None)) == before
    assert len(store.list_batches()) == 1


def test_each_model_version_scores_a_batch_once(store: AnomalyStore) -> None:
    first = claimed(store, model_version="1")
    second = claimed(store, model_version="2")
    assert first.id != second.id
    store.complete_batch(first.id, rows(2), n_records=2)
    store.complete_batch(second.id, rows(2), n_records=2)
    assert len(store.list_anomalies(limit=None)) == 4
    assert [b.id for b in store.list_batches()] == [second.id, first.id]
    assert [b.id for b in store.list_batches(limit=1)] == [second.id]


def test_a_failed_batch_is_taken_over_by_the_next_claim(store: AnomalyStore) -> None:
    batch = claimed(store)
    store.fail_batch(batch.id, "scoring crashed")
    failed = store.get_batch(batch.id)
    assert (failed.status, failed.error) == ("failed", "scoring crashed")
    assert failed.finished_at is not None

    again = claimed(store)
    assert (again.id, again.status, again.error, again.finished_at) == (
        batch.id,
        "running",
        None,
        None,
    )
    assert store.complete_batch(again.id, rows(2), n_records=2) == 2
    assert store.get_batch(batch.id).status == "done"


def test_an_error_inside_complete_rolls_everything_back(store: AnomalyStore) -> None:
    batch = claimed(store)

    def crash(n_written: int) -> None:
        raise RuntimeError(f"crash after {n_written} rows")

    with pytest.raises(RuntimeError, match="crash after"):
        store.complete_batch(batch.id, rows(12_000), n_records=12_000, on_progress=crash)
    assert store.list_anomalies(limit=None) == []
    assert store.get_batch(batch.id).status == "running"


def test_quarantine_records_a_batch_that_is_never_retried(store: AnomalyStore) -> None:
    key = {"source": "inbox/bad.csv", "content_sha256": sha("bad"), "model_name": "cpu"}
    batch_id = store.record_quarantine(**key, model_version="1", error="no timestamp column")
    quarantined = store.get_batch(batch_id)
    assert (quarantined.status, quarantined.error) == ("quarantined", "no timestamp column")
    assert store.claim_batch(**key, model_version="1") is None
    assert store.record_quarantine(**key, model_version="1", error="still bad") == batch_id
    assert store.get_batch(batch_id).error == "still bad"

    batch = claimed(store, "late")
    store.fail_batch(batch.id, "NaN in every column", quarantined=True)
    assert store.get_batch(batch.id).status == "quarantined"
    assert claim(store, "late") is None
    with pytest.raises(StoreError, match="quarantined"):
        store.complete_batch(batch.id, rows(1), n_records=1)


def test_bad_input_is_refused_and_nothing_is_written(store: AnomalyStore) -> None:
    batch = claimed(store)
    with pytest.raises(ConfigError, match="anomaly 1: missing score"):
        store.complete_batch(batch.id, [*rows(1), {"record_key": "x", "threshold": 1}], n_records=2)
    with pytest.raises(ConfigError, match=r"anomaly 0 \(x\): score is NaN"):
        store.complete_batch(
            batch.id, [{"record_key": "x", "score": float("nan"), "threshold": 1.0}], n_records=1
        )
    with pytest.raises(ConfigError, match="unknown keys is_anomaly"):
        store.complete_batch(
            batch.id,
            [{"record_key": "x", "score": 2.0, "threshold": 1.0, "is_anomaly": True}],
            n_records=1,
        )
    with pytest.raises(ConfigError, match="content_sha256"):
        store.claim_batch(source="a", content_sha256="abc", model_name="m", model_version="1")
    with pytest.raises(StoreError, match="batch 999 does not exist"):
        store.complete_batch(999, rows(1), n_records=1)
    with pytest.raises(StoreError, match="batch 999 does not exist"):
        store.get_batch(999)
    assert store.get_batch(batch.id).status == "running"
    assert store.list_anomalies() == []


def test_a_bad_row_late_in_a_generator_rolls_back_the_whole_batch(
    store: AnomalyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(anomaly_store, "_CHUNK_ROWS", 2)  # the bad row arrives in the third chunk
    batch = claimed(store)
    written: list[int] = []

    def stream() -> Any:
        yield from rows(5)
        yield {"record_key": "bad", "score": float("nan"), "threshold": 1.0}

    with pytest.raises(ConfigError, match=r"anomaly 5 \(bad\): score is NaN"):
        store.complete_batch(batch.id, stream(), n_records=6, on_progress=written.append)
    assert written == [2, 4]  # two chunks went to the database before the bad row
    assert store.get_batch(batch.id).status == "running"
    assert store.list_anomalies() == []
    assert store.complete_batch(batch.id, iter(rows(5)), n_records=5) == 5


def test_list_anomalies_newest_batch_first_then_highest_score(store: AnomalyStore) -> None:
    old, new = claimed(store, "old"), claimed(store, "new")
    store.complete_batch(old.id, rows(3, prefix="old"), n_records=3)
    store.complete_batch(new.id, rows(3, prefix="new"), n_records=3)
    keys = [a.record_key for a in store.list_anomalies(limit=None)]
    assert keys == ["new2", "new1", "new0", "old2", "old1", "old0"]
    assert [a.record_key for a in store.list_anomalies(limit=2)] == ["new2", "new1"]
    assert [a.record_key for a in store.list_anomalies(batch_id=old.id, limit=1)] == ["old2"]


# --- real processes ---------------------------------------------------------------------------


def start_worker(url: str, n_rows: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, "--rows", str(n_rows), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_worker(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{out}\n{err}"
    return out


def read_line(proc: subprocess.Popen[str], prefix: str, timeout_s: float = 30.0) -> str:
    """The worker's next output line starting with `prefix` (others are skipped)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else ""
        if line.startswith(prefix):
            return line.strip()
        if ready and not line:  # the worker ended
            break
    proc.kill()
    _, err = proc.communicate()
    pytest.fail(f"worker printed no {prefix!r} line; stderr:\n{err}")


def holds_write_lock(url: str, batch_id: int) -> bool:
    """Whether another process holds an open write transaction on the batch."""
    if url.startswith("sqlite"):
        database = sa.make_url(url).database
        assert database is not None
        raw = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            return True
        finally:
            raw.close()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT id FROM batches WHERE id = {batch_id} FOR UPDATE NOWAIT")
        return False
    except sa.exc.OperationalError as exc:
        assert "could not obtain lock" in str(exc)
        return True
    finally:
        engine.dispose()


def worker_keys(n: int) -> set[str]:
    return {f"r{i:06d}" for i in range(n)}


def test_sigkill_in_the_middle_of_complete_leaves_no_rows(store: AnomalyStore, db_url: str) -> None:
    n = 20_000
    proc = start_worker(db_url, n, "--pause-at-half", "60")
    try:
        batch_id = int(read_line(proc, "CLAIMED").split()[1])
        n_written = int(read_line(proc, "HALF").split()[1])
        assert 0 < n_written < n
        # Half the rows are written inside the worker's open transaction: invisible here.
        assert holds_write_lock(db_url, batch_id)
        assert store.list_anomalies(limit=None) == []
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    assert store.list_anomalies(limit=None) == []
    assert store.get_batch(batch_id).status == "running"
    deadline = time.monotonic() + 10  # PostgreSQL notices the dead client almost at once
    while holds_write_lock(db_url, batch_id) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert f"INSERTED {n}" in finish_worker(start_worker(db_url, n))  # the rerun takes over
    done = store.get_batch(batch_id)
    assert (done.status, done.n_flagged, done.n_records) == ("done", n, 2 * n)
    found = store.list_anomalies(batch_id=batch_id, limit=None)
    assert {a.record_key for a in found} == worker_keys(n)
    assert len(found) == n


@pytest.mark.parametrize(
    "barrier",
    [
        # both claim at once on an existing database: the second is refused while the first
        # (alive) holds the batch
        True,
        # both start on a new database at once: migrations race too, one may find it done
        False,
    ],
    ids=["claimed-by-both", "fresh-database"],
)
def test_two_processes_scoring_one_batch_leave_one_set_of_rows(
    db_url: str, tmp_path: Path, barrier: bool
) -> None:
    n = 10_000
    extra: list[str] = []
    if barrier:
        AnomalyStore(db_url).close()
        extra = ["--barrier", str(tmp_path / "barrier"), "--peers", "2"]
    procs = [start_worker(db_url, n, *extra) for _ in range(2)]
    outs = [finish_worker(proc) for proc in procs]

    inserted = sorted(int(m) for out in outs for m in re.findall(r"INSERTED (\d+)", out))
    n_skipped = sum(out.count("SKIPPED") for out in outs)
    if barrier:
        assert inserted == [n] and n_skipped == 1
    else:
        assert len(inserted) + n_skipped == 2
        assert sum(inserted) == n
    with AnomalyStore(db_url) as store:
        [batch] = store.list_batches()
        assert (batch.status, batch.n_flagged) == ("done", n)
        found = store.list_anomalies(limit=None)
    assert len(found) == n
    assert {a.record_key for a in found} == worker_keys(n)


# --- feedback, drift, alerts ------------------------------------------------------------------


def test_feedback_round_trip(store: AnomalyStore) -> None:
    batch = claimed(store)
    store.complete_batch(batch.id, rows(3), n_records=3)
    other = claimed(store, "b", model_version="2")
    store.complete_batch(other.id, rows(1), n_records=1)
    by_key = {(a.batch_id, a.record_key): a for a in store.list_anomalies(limit=None)}

    tp = store.add_feedback(by_key[batch.id, "k2"].id, "true_positive", "disk full")
    fp = store.add_feedback(by_key[batch.id, "k0"].id, "false_positive")
    store.add_feedback(by_key[other.id, "k0"].id, "false_positive")

    everything = store.list_feedback()
    assert len(everything) == 3
    [row] = store.list_feedback(model_name="cpu", verdict="true_positive")
    assert (row.id, row.verdict, row.note, row.record_key) == (tp, "true_positive", "disk full", "k2")
    assert (row.score, row.threshold, row.p_value) == (3.0, 0.5, 0.01)
    assert (row.batch_id, row.model_name, row.model_version) == (batch.id, "cpu", "1")
    assert row.created_at.tzinfo is UTC
    false_positives = store.list_feedback(verdict="false_positive")
    assert false_positives[0].id == fp
    assert {f.model_version for f in false_positives} == {"1", "2"}
    assert store.list_feedback(model_name="nobody") == []

    with pytest.raises(StoreError, match="anomaly 424242 does not exist"):
        store.add_feedback(424242, "true_positive")
    with pytest.raises(ConfigError, match=r"verdict must be one of.*'maybe'"):
        store.add_feedback(tp, "maybe")
    assert len(store.list_feedback()) == 3

    # A second verdict on the same anomaly replaces the first: still one row per anomaly.
    anomaly = by_key[batch.id, "k0"].id
    assert store.verdict_of(anomaly) == "false_positive"
    assert store.add_feedback(anomaly, "true_positive", "it was real") == fp
    assert store.verdict_of(anomaly) == "true_positive"
    assert len(store.list_feedback()) == 3
    assert [f.note for f in store.list_feedback() if f.id == fp] == ["it was real"]


def test_drift_report_round_trip(store: AnomalyStore) -> None:
    first, second = claimed(store, "a"), claimed(store, "b", model_version="2")
    details = {"value": {"drifted": True, "score": np.float64(0.31), "method": "wasserstein"}}
    report_id = store.record_drift_report(
        first.id,
        drift_detected=True,
        drifted_share=0.5,
        details=details,
        html_path="/reports/a.html",
        json_path="/reports/a.json",
    )
    store.record_drift_report(
        second.id,
        drift_detected=False,
        drifted_share=0.0,
        details={},
        html_path="/reports/b.html",
        json_path="/reports/b.json",
    )
    newest, oldest = store.list_drift_reports()
    assert (newest.batch_id, newest.drift_detected, newest.model_version) == (second.id, False, "2")
    assert oldest.id == report_id
    assert (oldest.drift_detected, oldest.drifted_share) == (True, 0.5)
    assert oldest.details == {"value": {"drifted": True, "score": 0.31, "method": "wasserstein"}}
    assert (oldest.html_path, oldest.json_path) == ("/reports/a.html", "/reports/a.json")
    assert oldest.created_at.tzinfo is UTC
    assert [r.id for r in store.list_drift_reports(limit=1)] == [newest.id]
    assert [r.model_name for r in store.list_drift_reports(model_name="cpu")] == ["cpu", "cpu"]
    assert store.list_drift_reports(model_name="nobody") == []
    with pytest.raises(StoreError, match="batch 999 does not exist"):
        store.record_drift_report(
            999, drift_detected=False, drifted_share=0, details={}, html_path="", json_path=""
        )


def _report(store: AnomalyStore, batch_id: int, name: str, detected: bool) -> int:
    return store.record_drift_report(
        batch_id,
        drift_detected=detected,
        drifted_share=0.5 if detected else 0.0,
        details={"name": name},
        html_path=f"/reports/{name}.html",
        json_path=f"/reports/{name}.json",
    )


def test_a_batch_has_one_drift_report_even_when_scored_twice_at_once(
    store: AnomalyStore, db_url: str
) -> None:
    batch = claimed(store)
    first = _report(store, batch.id, "first", False)
    assert _report(store, batch.id, "second", True) == first  # replaced, same id
    [row] = store.list_drift_reports()
    assert (row.id, row.drift_detected, row.html_path, row.details) == (
        first,
        True,
        "/reports/second.html",
        {"name": "second"},
    )
    # Two processes that scored the same batch record their reports at once: one row.
    other = claimed(store, "other")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        stores = [AnomalyStore(db_url) for _ in range(4)]
        ids = set(pool.map(lambda i: _report(stores[i], other.id, f"w{i}", i % 2 == 0), range(4)))
        for opened in stores:
            opened.close()
    assert len(ids) == 1 and len(store.list_drift_reports()) == 2


def test_migration_0002_keeps_the_newest_drift_report_of_each_batch(db_url: str) -> None:
    from alembic import command

    if db_url.startswith("sqlite"):
        Path(sa.make_url(db_url).database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:  # a database of aemon 0001 where two scorings both reported
        cfg = store_engine.alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(
            store_schema.batches_table.insert().values(
                id=1,
                source="a.csv",
                content_sha256=sha("a"),
                model_name="cpu",
                model_version="1",
                status="done",
                n_records=1,
                n_flagged=0,
                started_at=now,
            )
        )
        for name in ("old", "new"):
            conn.execute(
                store_schema.drift_reports_table.insert().values(
                    batch_id=1,
                    drift_detected=name == "new",
                    drifted_share=0.0,
                    details={},
                    html_path=f"{name}.html",
                    json_path=f"{name}.json",
                    created_at=now,
                )
            )
    engine.dispose()
    with AnomalyStore(db_url) as store:
        assert store.current_revision() == "0003"
        [row] = store.list_drift_reports()
        assert (row.html_path, row.drift_detected) == ("new.html", True)


def test_alert_upsert_counts_attempts_until_sent(store: AnomalyStore) -> None:
    batch = claimed(store)
    target = "json://hooks.example"
    store.record_alert(batch.id, target, status="failed", error="timeout", payload={"n": 1})
    [alert] = store.alerts_to_retry()
    assert (alert.target, alert.status, alert.attempts, alert.last_error) == (
        target,
        "failed",
        1,
        "timeout",
    )
    assert alert.created_at == alert.updated_at
    assert not store.alert_sent(batch.id, target)

    store.record_alert(batch.id, target, status="failed", error="HTTP 502", payload={"n": 2})
    [again] = store.alerts_to_retry()
    assert (again.id, again.attempts, again.last_error, again.payload) == (
        alert.id,
        2,
        "HTTP 502",
        {"n": 2},
    )
    assert again.created_at == alert.created_at and again.updated_at >= alert.updated_at

    store.record_alert(batch.id, target, status="sent", error=None, payload={"n": 2})
    assert store.alerts_to_retry() == []
    assert store.alert_sent(batch.id, target)
    assert not store.alert_sent(batch.id, "mailto://ops")

    with pytest.raises(ConfigError, match="alert status"):
        store.record_alert(batch.id, target, status="queued", error=None, payload={})

    # only sent alerts of this model count towards its rate limit
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert len(store.recent_alert_times(batch.model_name, hour_ago)) == 1
    assert store.recent_alert_times("another-model", hour_ago) == []
    assert store.recent_alert_times(batch.model_name, datetime.now(UTC) + timedelta(minutes=1)) == []
    with pytest.raises(StoreError, match="batch 999 does not exist"):
        store.record_alert(999, target, status="sent", error=None, payload={})
