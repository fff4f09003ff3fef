"""Reading images: folders, arrays and IDX files; unreadable files named, never skipped."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aemon import DataError
from aemon.data.images import ImageSchema, load_images


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_is_read_recursively_with_relative_keys(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.full((8, 6), 255, np.uint8))
    write_png(tmp_path / "sub" / "b.png", np.zeros((8, 6), np.uint8))
    schema, batch = load_images(tmp_path)
    assert schema == ImageSchema(8, 6, 1)
    assert batch.keys == ["a.png", "sub/b.png"]
    assert batch.images.shape == (2, 1, 8, 6) and batch.images.max() == 1.0


def test_images_are_resized_and_converted_to_the_schema(tmp_path: Path) -> None:
    write_png(tmp_path / "rgb.png", np.full((20, 10, 3), 128, np.uint8))
    _, batch = load_images(tmp_path, ImageSchema(4, 4, 1))
    assert batch.images.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(batch.images, 128 / 255, atol=1e-3)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    write_png(tmp_path / "ok.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"1 unreadable image file\(s\): broken.png") as err:
        load_images(tmp_path)
    assert err.value.record == "broken.png"


def test_npy_and_npz(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 255, (3, 5, 5), dtype=np.uint8)
    np.save(tmp_path / "x.npy", arr)
    np.savez(tmp_path / "x.npz", images=arr, labels=np.zeros(3))
    for name in ("x.npy", "x.npz"):
        _, batch = load_images(tmp_path / name)
        assert batch.keys == ["index:0", "index:1", "index:2"]
        np.testing.assert_allclose(batch.images[:, 0], arr / 255, atol=1e-7)


def test_float_arrays_must_be_in_unit_range() -> None:
    with pytest.raises(DataError, match=r"scaled to \[0, 1\]"):
        load_images(np.full((2, 4, 4), 3.0))
    with pytest.raises(DataError, match="shape"):
        load_images(np.zeros((2, 4, 4, 7)))


def test_idx_gz(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "t-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">IIII", 0x803, 2, 3, 4) + arr.tobytes())
    schema, batch = load_images(path)
    assert schema == ImageSchema(3, 4, 1)
    np.testing.assert_allclose(batch.images[1, 0], arr[1] / 255)
    bad = tmp_path / "bad-ubyte.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(struct.pack(">IIII", 0x801, 2, 3, 4))
    with pytest.raises(DataError, match="not an IDX image file"):
        load_images(bad)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_images(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_images(tmp_path / "empty")
