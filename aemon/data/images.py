"""Image input: a folder of PNG/JPEG (recursive), a .npy/.npz array, or an MNIST IDX .gz file.

Images come out as float32 arrays (N, C, H, W) scaled to [0, 1], resized to the detector's
size. Record keys are file paths relative to the folder, or `index:N` for arrays.
Unreadable files raise a DataError naming every one of them: nothing is skipped silently.
"""

from __future__ import annotations

import gzip
import io
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aemon.data.source import file_sha256, folder_sha256, read_bytes
from aemon.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
ARRAY_SUFFIXES = (".npy", ".npz")
IDX_IMAGE_MAGIC = 0x00000803
# Larger images are refused before decoding: a small PNG can expand to gigabytes of pixels.
MAX_IMAGE_PIXELS = 40_000_000


class ImageTooLarge(Exception):
    """An image whose header declares more than MAX_IMAGE_PIXELS pixels (reported by name)."""


@dataclass(frozen=True)
class ImageSchema:
    """Size and channels (1 = grayscale, 3 = RGB) the detector works at."""

    height: int
    width: int
    channels: int


@dataclass
class ImageBatch:
    """Images read and validated once: what scoring, profiles and plots all take."""

    keys: list[str]
    images: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    source: str = "<array>"
    content_sha256: str | None = None  # of the files read; None for an in-memory array

    @property
    def n_records(self) -> int:
        return len(self.images)


def is_image_source(path: Path) -> bool:
    name = path.name.lower()
    return (
        path.is_dir()
        or name.endswith(IMAGE_SUFFIXES + ARRAY_SUFFIXES)
        or name.endswith("-ubyte.gz")
        or name.endswith("-ubyte")
    )


def list_image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found", source=folder)
    return files


def _other_files(folder: Path, images: Sequence[Path]) -> list[tuple[str, str]]:
    """(key, sha256) of a folder's files that are not images: they count in its content hash."""
    shown = set(images)
    others = sorted(p for p in folder.rglob("*") if p.is_file() and p not in shown)
    return [(p.relative_to(folder).as_posix(), file_sha256(p)) for p in others]


def read_idx_images(path: Path, raw: bytes | None = None) -> np.ndarray:
    """MNIST IDX image file (gzipped or not) -> (N, H, W) uint8; `raw`: its bytes, if read."""
    raw = read_bytes(path)[0] if raw is None else raw
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"cannot read IDX file: {exc}", source=path) from exc
    if len(raw) < 16:
        raise DataError("file too short for an IDX image header", source=path)
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IDX_IMAGE_MAGIC:
        raise DataError(
            f"not an IDX image file: magic {magic:#010x}, expected {IDX_IMAGE_MAGIC:#010x}",
            source=path,
        )
    if len(raw) != 16 + n * rows * cols:
        raise DataError(
            f"IDX header says {n}x{rows}x{cols} but the file holds {len(raw) - 16} bytes",
            source=path,
        )
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)


def read_array(path: Path, raw: bytes | None = None) -> np.ndarray:
    """.npy, or .npz with one array (or one named `images`/`x`); `raw`: its bytes, if read."""
    raw = read_bytes(path)[0] if raw is None else raw
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read array file: {exc}", source=path) from exc
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        names = list(loaded.files)
        for name in ("images", "x", "X"):
            if name in names:
                return loaded[name]
        if len(names) == 1:
            return loaded[names[0]]
    raise DataError(f"npz holds arrays {names}; name the images array 'images'", source=path)


def _to_nchw(array: np.ndarray, source: str) -> np.ndarray:
    """(N,H,W) or (N,H,W,C) with C in 1/3/4 -> float32 (N,C,H,W) in [0, 1]."""
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise DataError(
            f"expected an image array of shape (N, H, W) or (N, H, W, C) with C in 1/3/4, got {array.shape}",
            source=source,
        )
    if array.shape[-1] == 4:
        array = array[..., :3]
    if array.dtype == np.uint8:
        out = array.astype(np.float32) / 255.0
    elif np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer):
        out = array.astype(np.float32)
        if not np.isfinite(out).all():
            bad = int(np.flatnonzero(~np.isfinite(out).reshape(len(out), -1).all(axis=1))[0])
            raise DataError("image holds NaN/inf values", source=source, record=f"index:{bad}")
        lo, hi = float(out.min(initial=0.0)), float(out.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"non-uint8 images must be scaled to [0, 1], got values in [{lo:g}, {hi:g}]",
                source=source,
            )
    else:
        raise DataError(f"unsupported image dtype {array.dtype}", source=source)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _resize_nchw(images: np.ndarray, schema: ImageSchema) -> np.ndarray:
    """Match channels (gray <-> RGB) and size (bilinear, antialiased)."""
    import torch
    import torch.nn.functional as F

    if images.shape[1] != schema.channels:
        if schema.channels == 1:  # ITU-R 601 luma, as PIL's "L" conversion
            weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[None, :, None, None]
            images = (images * weights).sum(axis=1, keepdims=True, dtype=np.float32)
        else:
            images = np.repeat(images, schema.channels, axis=1)
    if images.shape[2:] != (schema.height, schema.width):
        with torch.inference_mode():
            images = (
                F.interpolate(
                    torch.from_numpy(images),
                    size=(schema.height, schema.width),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
                .clamp_(0, 1)
                .numpy()
            )
    return np.ascontiguousarray(images, dtype=np.float32)


def _decode_image(source: Path | io.BytesIO) -> np.ndarray:
    """One PNG/JPEG file or buffer -> (H, W, C) uint8 with C = 1 (grayscale) or 3 (RGB).
    Its size is checked from the header, before any pixel is decoded."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_IMAGE_PIXELS is lower
        img = Image.open(source)
    with img:
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise ImageTooLarge(
                f"{img.width}x{img.height} pixels, more than the {MAX_IMAGE_PIXELS:,} aemon decodes "
                "(a decompression bomb?)"
            )
        img.load()
        mode = "L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
        arr = np.asarray(img.convert(mode))
    return arr if arr.ndim == 3 else arr[..., None]


def _decode_all(items: Sequence[tuple[str, Path | io.BytesIO]], root: Path | None) -> list[np.ndarray]:
    """Decode every item; report every unreadable one by name, never skip it."""
    from PIL import UnidentifiedImageError

    arrays, failures = [], []
    for name, source in items:
        try:
            arrays.append(_decode_image(source))
        except UnidentifiedImageError:  # its message holds a memory address: not a stable reason
            failures.append(f"{name} (not an image file: {', '.join(IMAGE_SUFFIXES)})")
        except ImageTooLarge as exc:
            failures.append(f"{name} (too large: {exc})")
        except Exception as exc:  # Pillow's decoders raise many types on corrupt data
            failures.append(f"{name} ({type(exc).__name__}: {exc})")
    if failures:
        raise DataError(
            f"{len(failures)} unreadable image file(s): "
            + "; ".join(failures[:10])
            + (" ..." if len(failures) > 10 else ""),
            source=root,
            record=failures[0].split(" (")[0],
        )
    return arrays


def _read_image_files(
    files: Sequence[Path], root: Path, source: Path | None = None
) -> tuple[list[str], list[np.ndarray], list[tuple[str, str]]]:
    """Keys, decoded images, and (key, sha256) of each file: every file is read once. Errors
    name `source` (default: `root`)."""
    keys = [path.relative_to(root).as_posix() for path in files]
    contents = [read_bytes(path) for path in files]
    hashes = [(k, sha) for k, (_, sha) in zip(keys, contents, strict=True)]
    buffers = [(k, io.BytesIO(raw)) for k, (raw, _) in zip(keys, contents, strict=True)]
    return keys, _decode_all(buffers, source or root), hashes


def load_images(
    data: str | Path | np.ndarray, schema: ImageSchema | None = None
) -> tuple[ImageSchema, ImageBatch]:
    """Read images and bring them to `schema` (inferred from the first image when None).

    Each file is opened once; the batch carries the content hash of what was read.
    """
    if isinstance(data, np.ndarray):
        nchw = _to_nchw(data, "<array>")
        keys = [f"index:{i}" for i in range(len(nchw))]
        source, sha = "<array>", None
    else:
        path = Path(data)
        source = str(path)
        if not path.exists():
            raise DataError("file or folder not found", source=path)
        name = path.name.lower()
        if path.is_dir():
            files = list_image_files(path)
            keys, arrays, hashes = _read_image_files(files, path)
            sha = folder_sha256(hashes + _other_files(path, files))
            channels = 3 if any(a.shape[-1] == 3 for a in arrays) else 1
            target = schema or ImageSchema(arrays[0].shape[0], arrays[0].shape[1], channels)
            converted = [
                _resize_nchw(_to_nchw(a[None], f"{source}/{k}"), target)
                for a, k in zip(arrays, keys, strict=True)
            ]
            return target, ImageBatch(keys, np.concatenate(converted), source, sha)
        if name.endswith(IMAGE_SUFFIXES):
            keys, arrays, hashes = _read_image_files([path], path.parent, path)
            nchw = _to_nchw(arrays[0][None], source)
            target = schema or ImageSchema(nchw.shape[2], nchw.shape[3], nchw.shape[1])
            return target, ImageBatch(keys, _resize_nchw(nchw, target), source, hashes[0][1])
        if not name.endswith((*ARRAY_SUFFIXES, "-ubyte.gz", "-ubyte")):
            raise DataError(
                "unsupported image source; expected a folder of images, .npy/.npz or IDX .gz",
                source=path,
            )
        raw, sha = read_bytes(path)
        array = read_array(path, raw) if name.endswith(ARRAY_SUFFIXES) else read_idx_images(path, raw)
        nchw = _to_nchw(array, source)
        keys = [f"index:{i}" for i in range(len(nchw))]
    if len(nchw) == 0:
        raise DataError("no images in the input", source=source)
    target = schema or ImageSchema(nchw.shape[2], nchw.shape[3], nchw.shape[1])
    return target, ImageBatch(keys, _resize_nchw(nchw, target), source, sha)


def decode_images(items: Sequence[bytes | str | Path], schema: ImageSchema) -> np.ndarray:
    """Encoded images (PNG/JPEG bytes) or file paths -> float32 (N, C, H, W) in [0, 1].

    Each image is converted exactly as `load_images` converts a folder, so a model served
    over a DataFrame scores the same as one reading the files itself.
    """
    if not items:
        raise DataError("no images in the input")
    named = [
        (f"index:{i}", io.BytesIO(item)) if isinstance(item, bytes | bytearray) else (str(item), Path(item))
        for i, item in enumerate(items)
    ]
    arrays = _decode_all(named, None)
    return np.concatenate(
        [_resize_nchw(_to_nchw(a[None], name), schema) for a, (name, _) in zip(arrays, named, strict=True)]
    )
