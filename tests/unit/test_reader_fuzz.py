"""Fuzzing the readers (issue 13): arbitrary bytes and mutated CSV, gzip, Parquet, PNG and .npy
files go into `load_series`, `load_images` and `Detector.read`. No input may crash: each one is
read, or raises an `AemonError` (a one-line `DataError` for bad data). Derandomized, with few
examples, so it runs in seconds and cannot flake; a failure prints the bytes that caused it."""

from __future__ import annotations

import gzip
import io
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aemon import AemonError, Detector
from aemon.data import ImageSchema, SeriesSchema, load_images, load_series
from aemon.synthetic import make_images, make_series

FUZZ = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SERIES = make_series(120, 2, seed=3)[0]
CSV = SERIES.to_csv(index=False).encode()
SCHEMA = SeriesSchema("timestamp", ("metric_0", "metric_1"))
IMAGE_SCHEMA = ImageSchema(16, 16, 1)


def _parquet() -> bytes:
    buffer = io.BytesIO()
    SERIES.to_parquet(buffer)
    return buffer.getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((make_images(1, 16, seed=3)[0][0].clip(0, 1) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, (make_images(3, 16, seed=4)[0].clip(0, 1) * 255).astype(np.uint8))
    return buffer.getvalue()


VALID = {".csv": CSV, ".csv.gz": gzip.compress(CSV), ".parquet": _parquet(), ".png": _png(), ".npy": _npy()}


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aemon-fuzz-") as name:
        yield Path(name)


@pytest.fixture(scope="module")
def detectors() -> dict[str, Detector]:
    """Tiny fitted detectors, one per modality, for `Detector.read`."""
    series = Detector(window=8, epochs=1, samples_per_epoch=64, progress=False).fit(SERIES)
    images = Detector(modality="image", epochs=1, samples_per_epoch=32, progress=False).fit(
        make_images(40, 16, seed=5)[0]
    )
    return {"timeseries": series, "image": images}


def readers(suffix: str, detectors: dict[str, Detector]) -> list[Callable[[Path], Any]]:
    if suffix in (".png", ".npy"):
        return [load_images, lambda p: load_images(p, IMAGE_SCHEMA), detectors["image"].read]
    return [load_series, lambda p: load_series(p, SCHEMA), detectors["timeseries"].read]


def read_all(data: bytes, suffix: str, folder: Path, detectors: dict[str, Detector]) -> None:
    """Every reader of the file kind reads `data`, or raises one AemonError with one line."""
    path = folder / f"fuzzed{suffix}"
    path.write_bytes(data)
    for read in readers(suffix, detectors):
        try:
            read(path)
        except AemonError as exc:
            assert "\n" not in str(exc), str(exc)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` with a few bytes flipped, inserted, deleted, or the end cut off."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 32))]
        else:
            del data[at:]
    return bytes(data)


SUFFIXES = list(VALID)


@pytest.mark.parametrize("suffix", SUFFIXES)
@FUZZ
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash_a_reader(
    suffix: str, data: bytes, folder: Path, detectors: dict[str, Detector]
) -> None:
    read_all(data, suffix, folder, detectors)


@pytest.mark.parametrize("suffix", SUFFIXES)
@FUZZ
@given(data=st.data())
def test_mutated_files_never_crash_a_reader(
    suffix: str, data: st.DataObject, folder: Path, detectors: dict[str, Detector]
) -> None:
    read_all(data.draw(mutated(VALID[suffix])), suffix, folder, detectors)


CSV_TOKENS = [
    ",", "\n", "\r\n", ";", '"', "nan", "inf", "-inf", "1e308", "-1e400", "", " ", "1", "0.5", "x",
    "2026-01-01", "2026-01-01 00:05", "2026-01-01T00:10+02:00", "timestamp", "metric_0", "\ufeff",
    "\x00", "\x1b[31m", "é", "<script>",
]  # fmt: skip


@FUZZ
@given(tokens=st.lists(st.sampled_from(CSV_TOKENS), max_size=80))
def test_csv_made_of_tricky_tokens_never_crashes(
    tokens: list[str], folder: Path, detectors: dict[str, Detector]
) -> None:
    body = "timestamp,metric_0,metric_1\n" + "".join(tokens)
    read_all(body.encode(), ".csv", folder, detectors)
