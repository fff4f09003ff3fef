"""The bad-input suite (issue 13): one table of cases, each through `aemon score FILE --model M`
(the real command line, in a subprocess) and through `score-inbox` (a real Prefect flow run).

A bad batch gets one line that names the file, the record where one is concerned, and the
problem; it is recorded `quarantined` with that line in the `batches` table, and in an inbox it
moves to quarantine/. Some inputs are not bad: they are documented as accepted (an extra
column is ignored, a BOM is read, an image of another size or channel count is converted) and
must score. The README's "Bad input" table lists the same kinds.

The models are trained once for the module (a few epochs on small data), every batch is
scored in one `aemon` process (the command's `main` called once per batch, its output caught
per batch at the file-descriptor level: a fresh process per batch would cost 30 imports of
torch and MLflow) and in one inbox run per model, so the suite takes seconds per case.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aemon import Detector, drift, registry
from aemon.data.images import MAX_IMAGE_PIXELS
from aemon.store import AnomalyStore
from aemon.synthetic import make_images, make_series

SERIES_MODEL, IMAGE_MODEL = "metrics", "parts"
EXTREME_ROW = 100  # the row that holds the extreme value
SECRET_LINE = "root:x:0:0:the-secret-line:/root:/bin/bash"


@cache
def series(seed: int) -> pd.DataFrame:
    """A normal 300-row batch; a seed of its own per case, so no two cases share content."""
    return make_series(300, 2, seed=seed, start=f"2026-03-{seed % 28 + 1:02d}")[0]


def csv_text(seed: int) -> str:
    return series(seed).to_csv(index=False)


def write_frame(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_csv(path, index=False)


def write_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def changed(seed: int, change: Callable[[pd.DataFrame], None]) -> Callable[[Path], None]:
    frame = series(seed).astype({"timestamp": str})
    change(frame)
    return write_frame(frame)


def set_cell(row: int, column: str, value: Any) -> Callable[[pd.DataFrame], None]:
    def change(frame: pd.DataFrame) -> None:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value

    return change


def truncated_gzip(path: Path) -> None:
    data = gzip.compress(csv_text(5).encode())
    path.write_bytes(data[: len(data) // 2])


def corrupt_parquet(path: Path) -> None:
    """A Parquet file whose footer (the schema and where the columns lie) is overwritten."""
    buffer = io.BytesIO()
    series(6).to_parquet(buffer)
    data = bytearray(buffer.getvalue())
    footer = int.from_bytes(data[-8:-4], "little")
    data[-8 - footer + 10 : -8 - footer + 60] = b"\xff" * 50
    path.write_bytes(bytes(data))


def directory(path: Path) -> None:
    path.mkdir()
    (path / "part-1.csv").write_text(csv_text(7))


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@cache
def ring(seed: int) -> np.ndarray:
    """A normal image like the training ones, as uint8 (16x16)."""
    image = make_images(1, 16, seed=seed)[0][0]
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def png_bomb(path: Path) -> None:
    """A 1-bit PNG of 10,000 x 8,000 zeros: 30 kB on disk, 80 M pixels once decoded."""
    width, height = 10_000, 8_000
    assert width * height > MAX_IMAGE_PIXELS

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + width // 8)  # filter byte, then the row's bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def image_folder_with_one_bad(path: Path) -> None:
    path.mkdir()
    (path / "a.png").write_bytes(png_bytes(ring(41)))
    (path / "b.png").write_bytes(b"GIF89a not really")
    (path / "c.png").write_bytes(png_bytes(ring(42)))


@dataclass(frozen=True)
class Case:
    """A batch named `name`, written by `make`, scored with `model`. `problem` is a text that
    the one-line error must hold, `record` the record it must name (None: no record concerns
    it). Accepted inputs have status "done" and no problem."""

    kind: str
    name: str
    make: Callable[[Path], None]
    status: str = "quarantined"
    problem: str | None = None
    record: str | None = None
    model: str = SERIES_MODEL
    cli_problem: str | None = None  # where `aemon score` on the path itself says otherwise
    flagged_key: str | None = None  # a record that must be flagged


CASES = [
    # --- unreadable files
    Case("empty file", "empty.csv", write_bytes(b""), problem="cannot read file: Empty CSV file"),
    Case("header only", "header.csv", write_bytes(b"timestamp,metric_0,metric_1\n"), problem="no rows"),
    Case(
        "binary garbage",
        "garbage.csv",
        write_bytes(random.Random(13).randbytes(4096)),
        problem="cannot read file",
    ),
    Case("truncated gzip", "cut.csv.gz", truncated_gzip, problem="cannot read file"),
    Case("corrupt Parquet", "corrupt.parquet", corrupt_parquet, problem="cannot read file"),
    Case(
        "not UTF-8",
        "latin1.csv",
        write_bytes("timestamp,m\xe9trique\n2026-01-01,1\n".encode("latin-1")),
        problem="not UTF-8 text (byte 0xe9)",
    ),
    Case("unsupported file type", "batch.xlsx", write_bytes(csv_text(8).encode()), problem="unsupported"),
    # --- extreme values: flagged, never NaN
    *(
        Case(
            f"value {value}",
            f"extreme-{value}.csv",
            changed(seed, set_cell(EXTREME_ROW, "metric_0", value)),
            status="done",
            flagged_key=pd.Timestamp(series(seed)["timestamp"][EXTREME_ROW]).isoformat(),
        )
        for seed, value in ((10, "1e20"), (11, "1e38"), (12, "1e308"), (13, "-1e308"))
    ),
    # --- columns
    Case(
        "wrong column",
        "renamed.csv",
        write_frame(series(14).rename(columns={"metric_1": "metric_9"})),
        problem="value columns ['metric_1'] not found",
    ),
    Case(
        "extra column (ignored)",
        "extra.csv",
        write_frame(series(15).assign(note="ok", metric_2=1.0)),
        status="done",
    ),
    Case(
        "missing column",
        "missing.csv",
        write_frame(series(16).drop(columns=["metric_1"])),
        problem="value columns ['metric_1'] not found",
    ),
    Case(
        "string in a numeric column",
        "strings.csv",
        changed(17, set_cell(42, "metric_0", "n/a-value")),
        problem="value 'n/a-value' in column 'metric_0' is not a number",
        record="42",
    ),
    Case("NaN", "nan.csv", changed(18, set_cell(17, "metric_1", "NaN")), problem="NaN/inf", record="17"),
    Case("inf", "inf.csv", changed(19, set_cell(23, "metric_1", "inf")), problem="NaN/inf", record="23"),
    # --- timestamps
    Case(
        "duplicate timestamps",
        "dup.csv",
        changed(
            20, lambda f: f.__setitem__("timestamp", f["timestamp"].where(f.index != 30, f["timestamp"][29]))
        ),
        problem="duplicate timestamp",
        record="30",
    ),
    Case(
        "unsorted timestamps",
        "unsorted.csv",
        write_frame(series(21).iloc[[*range(40), 41, 40, *range(42, 300)]]),
        problem="timestamps are not sorted",
        record="41",
    ),
    Case(
        "mixed time zones",
        "mixed-tz.csv",
        changed(
            22,
            lambda f: f.__setitem__(
                "timestamp", f["timestamp"].where(f.index != 7, f["timestamp"] + "+02:00")
            ),
        ),
        problem="mix values with and without a time zone",
        record="7",
    ),
    Case(
        "unparseable timestamp",
        "bad-time.csv",
        changed(23, set_cell(5, "timestamp", "yesterday at noon")),
        problem="unparseable timestamp",
        record="5",
    ),
    Case(
        "fewer rows than a window",
        "short.csv",
        write_frame(series(24).head(5)),
        problem="fewer than the window",
    ),
    # --- encodings and delimiters
    Case("UTF-8 BOM (read)", "bom.csv", write_bytes(b"\xef\xbb\xbf" + csv_text(25).encode()), status="done"),
    Case(
        "semicolon delimiter",
        "semicolon.csv",
        write_bytes(csv_text(26).replace(",", ";").encode()),
        problem="seems to use ';' as its delimiter",
    ),
    # --- file names: accepted, named exactly
    Case("name with spaces", "a batch with spaces.csv", write_frame(series(27)), status="done"),
    Case("unicode name", "données-été-数据.csv", write_frame(series(28)), status="done"),
    Case("quotes in the name", 'it\'s "quoted".csv', write_frame(series(29)), status="done"),
    Case("HTML in the name", "<img src=x onerror=alert(1)>.csv", write_frame(series(30)), status="done"),
    # --- the inbox itself
    Case(
        "symlink out of the inbox",
        "link.csv",
        lambda path: path.symlink_to(path.parent.parent / "outside" / "secret.csv"),
        problem="a symbolic link to",
        cli_problem="the series has no rows",  # named on the command line: read, as the user asked
    ),
    Case(
        "directory in the inbox",
        "a-folder",
        directory,
        problem="a folder: a time-series batch is one CSV or Parquet file",
    ),
    # --- images
    Case(
        "non-image file",
        "notes.png",
        write_bytes(b"these are notes, not pixels\n"),
        problem="not an image file",
        record="notes.png",
        model=IMAGE_MODEL,
    ),
    Case(
        "0-byte PNG",
        "zero.png",
        write_bytes(b""),
        problem="not an image file",
        record="zero.png",
        model=IMAGE_MODEL,
    ),
    Case(
        "truncated PNG",
        "cut.png",
        write_bytes(png_bytes(ring(43))[:-60]),  # the pixel data cut
        problem="truncated",
        record="cut.png",
        model=IMAGE_MODEL,
    ),
    Case(
        "huge image (decompression bomb)",
        "bomb.png",
        png_bomb,
        problem="decompression bomb",
        record="bomb.png",
        model=IMAGE_MODEL,
    ),
    Case(
        "one bad image in a folder",
        "images",
        image_folder_with_one_bad,
        problem="1 unreadable image file(s): b.png",
        record="b.png",
        model=IMAGE_MODEL,
    ),
    Case(
        "wrong channels in an array",
        "two-channels.npy",
        lambda path: np.save(path, np.zeros((4, 16, 16, 2), np.uint8)),
        problem="with C in 1/3/4, got (4, 16, 16, 2)",
        model=IMAGE_MODEL,
    ),
    Case(
        "wrong size (resized)",
        "larger.png",
        write_bytes(png_bytes(np.kron(ring(44), np.ones((3, 2), np.uint8)))),
        status="done",
        model=IMAGE_MODEL,
    ),
    Case(
        "RGB for a grayscale model (converted)",
        "colour.png",
        write_bytes(png_bytes(np.repeat(ring(45)[..., None], 3, axis=2))),
        status="done",
        model=IMAGE_MODEL,
    ),
]
BY_KIND = {case.kind: case for case in CASES}
AGAIN = ("nan.csv", "nan again.csv")  # quarantined content that comes back under another name


def test_the_table_has_the_kinds_the_issue_asks_for() -> None:
    assert len(CASES) >= 25 and len(BY_KIND) == len(CASES)
    assert len({case.name for case in CASES}) == len(CASES)


# --- the two runs: every case through `aemon score` and through score-inbox -------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, _mlflow_template: Path) -> Path:
    """An AEMON_HOME whose MLflow store holds the series model and the image model, each with
    its drift reference profile: trained once for the module, small and quick."""
    home = tmp_path_factory.mktemp("bad_inputs_home")
    shutil.copyfile(_mlflow_template, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEMON_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        reference = make_series(1_500, 2, seed=1)[0]
        det = Detector(window=16, epochs=2, samples_per_epoch=512, progress=False).fit(reference)
        registry.log_training(
            det,
            name=SERIES_MODEL,
            data_source="test",
            drift_reference=drift.reference_profile(det, reference),
        )
        images = make_images(200, 16, seed=1)[0]
        det = Detector(modality="image", epochs=2, samples_per_epoch=256, progress=False).fit(images)
        registry.log_training(
            det, name=IMAGE_MODEL, data_source="test", drift_reference=drift.reference_profile(det, images)
        )
    return home


def write_cases(folder: Path) -> dict[str, Path]:
    """Every case's batch in `folder`, and a file outside it for the link to point at."""
    folder.mkdir(parents=True)
    outside = folder.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.csv").write_text(SECRET_LINE + "\n")
    paths = {}
    for case in CASES:
        paths[case.kind] = folder / case.name
        case.make(paths[case.kind])
    return paths


# The `aemon` command's own entry point, once per batch in one process; each call's stdout,
# stderr and exit code caught at the file-descriptor level (rich and logging write to them).
DRIVER = r"""
import json, os, sys, traceback
from flows.cli import main

out = sys.argv[1]
for n, argv in enumerate(json.loads(sys.argv[2])):
    sys.stdout.flush(); sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(f"{out}/{n}.out", "wb") as o, open(f"{out}/{n}.err", "wb") as e:
        os.dup2(o.fileno(), 1); os.dup2(e.fileno(), 2)
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc()
            code = -1
        sys.stdout.flush(); sys.stderr.flush()
        os.dup2(saved[0], 1); os.dup2(saved[1], 2)
    with open(f"{out}/{n}.rc", "w") as f:
        f.write(str(code))
"""


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_cli(calls: list[list[str]], env: dict[str, str], out: Path) -> list[Run]:
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(out), json.dumps(calls)],
        env=env,
        text=True,
        capture_output=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [
        Run(
            int((out / f"{n}.rc").read_text()), (out / f"{n}.out").read_text(), (out / f"{n}.err").read_text()
        )
        for n in range(len(calls))
    ]


@dataclass
class CliRuns:
    paths: dict[str, Path]
    runs: dict[str, Run]
    again: Run
    anomalies_json: Run
    database_url: str


@pytest.fixture(scope="module")
def cli_runs(models: Path, tmp_path_factory: pytest.TempPathFactory) -> CliRuns:
    """`aemon score PATH --model M` for every case, then the quarantined NaN batch again under
    another name, then `aemon anomalies --format json`."""
    root = tmp_path_factory.mktemp("bad_inputs_cli")
    paths = write_cases(root / "batches")
    again = root / "batches" / AGAIN[1]
    shutil.copyfile(root / "batches" / AGAIN[0], again)
    database_url = f"sqlite:///{root / 'aemon.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "AEMON_"))}
    env.update(
        AEMON_HOME=str(models),
        AEMON_DATABASE_URL=database_url,
        NO_COLOR="1",
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    calls = [["score", str(paths[case.kind]), "--model", case.model] for case in CASES]
    calls += [
        ["score", str(again), "--model", SERIES_MODEL],
        ["anomalies", "--format", "json", "--limit", "0"],
    ]
    runs = run_cli(calls, env, root / "out")
    return CliRuns(
        paths,
        {case.kind: run for case, run in zip(CASES, runs, strict=False)},
        runs[-2],
        runs[-1],
        database_url,
    )


@dataclass
class InboxRuns:
    inbox: Path
    summaries: dict[str, dict[str, Any]]  # by case kind
    again: dict[str, Any]
    database_url: str


@pytest.fixture(scope="module")
def inbox_runs(models: Path, tmp_path_factory: pytest.TempPathFactory, prefect_harness: str) -> InboxRuns:
    """score-inbox once per model over an inbox holding every case (a Prefect flow run on the
    session's test server), then again with the NaN batch's bytes under another name."""
    from flows.score import score_inbox

    root = tmp_path_factory.mktemp("bad_inputs_inbox")
    database_url = f"sqlite:///{root / 'aemon.db'}"
    summaries: dict[str, dict[str, Any]] = {}
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        # Evidently correlates the columns of a one-image batch (the image cases): numpy warns,
        # and pytest's warnings-as-errors would cost that batch its drift report.
        warnings.filterwarnings("ignore", "Degrees of freedom <= 0", RuntimeWarning)
        mp.setenv("AEMON_HOME", str(models))
        mp.setenv("AEMON_DATABASE_URL", database_url)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        for model in (SERIES_MODEL, IMAGE_MODEL):
            inbox = root / model / "inbox"
            paths = write_cases(inbox)
            for kind, path in paths.items():
                if BY_KIND[kind].model != model:
                    shutil.move(path, root / model / path.name)  # the other model's cases wait outside
            by_source = {s["source"]: s for s in score_inbox(str(inbox), model)}
            summaries.update(
                {kind: by_source[str(path)] for kind, path in paths.items() if BY_KIND[kind].model == model}
            )
        inbox = root / SERIES_MODEL / "inbox"
        (inbox / AGAIN[1]).write_bytes((inbox / "quarantine" / AGAIN[0]).read_bytes())
        [again] = score_inbox(str(inbox), SERIES_MODEL)
    return InboxRuns(root, summaries, again, database_url)


def open_store(url: str) -> Iterator[AnomalyStore]:
    with AnomalyStore(url) as store:
        yield store


@pytest.fixture(scope="module")
def cli_store(cli_runs: CliRuns) -> Iterator[AnomalyStore]:
    yield from open_store(cli_runs.database_url)


@pytest.fixture(scope="module")
def inbox_store(inbox_runs: InboxRuns) -> Iterator[AnomalyStore]:
    yield from open_store(inbox_runs.database_url)


# --- what each case must give ---------------------------------------------------------------


def check_error(case: Case, error: str | None, path: Path, problem: str | None) -> None:
    """One line that names the file, the record (where one is concerned) and the problem."""
    assert error, case.kind
    assert "\n" not in error and "Traceback" not in error, error
    assert str(path) in error, (str(path), error)
    if problem is not None:
        assert problem in error, (problem, error)
    if case.record is not None:
        assert f"record {case.record}" in error, error
    assert SECRET_LINE not in error


def check_ledger(store: AnomalyStore, case: Case, path: Path, status: str, error: str | None) -> int:
    """The batch's row: its status, and for a bad batch the same one-line reason."""
    [batch] = [b for b in store.list_batches(limit=None) if b.source == str(path)]
    assert batch.status == status, (case.kind, batch)
    if status == "quarantined":
        assert batch.error == error
    else:
        assert batch.error is None and batch.n_records > 0
    return batch.id


def check_extreme(case: Case, store: AnomalyStore, batch_id: int) -> None:
    """The row with an extreme value is flagged, with a score that is a number (not NaN)."""
    if case.flagged_key is None:
        return
    anomalies = {a.record_key: a for a in store.list_anomalies(batch_id=batch_id, limit=None)}
    flagged = anomalies.get(case.flagged_key or "")
    assert flagged is not None, (case.kind, sorted(anomalies)[:5])
    assert not np.isnan(flagged.score) and flagged.score > flagged.threshold, flagged


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_aemon_score(case: Case, cli_runs: CliRuns, cli_store: AnomalyStore) -> None:
    path, run = cli_runs.paths[case.kind], cli_runs.runs[case.kind]
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr == "", run.stderr  # the reason goes with the batch on stdout, once
    if case.status == "done":
        assert run.returncode == 0, run.stdout
        batch_id = check_ledger(cli_store, case, path, "done", None)
        check_extreme(case, cli_store, batch_id)
        return
    assert run.returncode == 1, run.stdout
    lines = [line for line in run.stdout.splitlines() if line.startswith(f"quarantined {path.name} (batch ")]
    assert len(lines) == 1, run.stdout
    error = lines[0].split("): ", 1)[1]
    check_error(case, error, path, case.cli_problem or case.problem)
    check_ledger(cli_store, case, path, "quarantined", error)


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_score_inbox(case: Case, inbox_runs: InboxRuns, inbox_store: AnomalyStore) -> None:
    summary = inbox_runs.summaries[case.kind]
    path = Path(summary["source"])
    assert summary["status"] == case.status, summary
    moved = Path(summary["moved_to"])
    assert moved.parent == path.parent / ("done" if case.status == "done" else "quarantine")
    assert os.path.lexists(moved) and not os.path.lexists(path)  # moved, never deleted
    if case.status == "done":
        assert not summary["warnings"], summary["warnings"]  # its drift report too
        report = Path(summary["report_path"]).read_text()
        assert "<img src=x" not in report and "<script" not in report  # names stay text
        batch_id = check_ledger(inbox_store, case, path, "done", None)
        check_extreme(case, inbox_store, batch_id)
        return
    check_error(case, summary["error"], path, case.problem)
    check_ledger(inbox_store, case, path, "quarantined", summary["error"])


# --- quarantined content that comes back ----------------------------------------------------


def test_quarantined_content_under_another_name_is_quarantined_again(
    cli_runs: CliRuns, inbox_runs: InboxRuns, inbox_store: AnomalyStore
) -> None:
    run = cli_runs.again
    assert run.returncode == 1 and "this content was quarantined before" in run.stdout, run.stdout
    again = inbox_runs.again
    assert again["status"] == "quarantined" and "quarantined before" in again["error"], again
    assert Path(again["moved_to"]).parent.name == "quarantine"
    assert not (inbox_runs.inbox / SERIES_MODEL / "inbox" / "done" / AGAIN[1]).exists()


def test_anomalies_json_is_strict_json_after_extreme_values(cli_runs: CliRuns) -> None:
    run = cli_runs.anomalies_json
    assert run.returncode == 0, run.stderr

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    records = json.loads(run.stdout, parse_constant=refuse)
    assert records and all(r["score"] is None or r["score"] == r["score"] for r in records)
