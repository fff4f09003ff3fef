"""The one place a batch's files are opened: their bytes are hashed while they are read, so one
read gives a batch's records and its content hash (which identifies the batch in the ledger).

A batch's content hash is the sha256 of a file's bytes, or for a folder the sha256 of its
sorted (relative path, file sha256) list (`folder_sha256`).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aemon.errors import DataError

BLOCK = 1 << 20


class HashingReader(io.RawIOBase):
    """A binary file that hashes every byte read from it (pyarrow and numpy read through it)."""

    def __init__(self, raw: io.BufferedReader) -> None:
        super().__init__()
        self._raw = raw
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n or 0

    def hexdigest(self) -> str:
        """The sha256 of the whole file: what was not read yet is read (and hashed) now."""
        for block in iter(lambda: self._raw.read(BLOCK), b""):
            self._digest.update(block)
        return self._digest.hexdigest()


class ContentHash:
    """Where a streaming reader leaves the sha256 of a file once it has read it to the end."""

    value: str | None = None


@contextmanager
def open_hashed(path: Path) -> Iterator[HashingReader]:
    """Open a batch file for reading; raises DataError when it cannot be opened."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot open: {exc.strerror or exc}", source=path) from exc
    with raw, HashingReader(raw) as reader:
        yield reader


def read_bytes(path: Path) -> tuple[bytes, str]:
    """A whole file and its sha256, from one read."""
    with open_hashed(path) as fh:
        data = fh.read()
        return data, fh.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    with open_hashed(path) as fh:
        return fh.hexdigest()


def folder_sha256(files: Iterable[tuple[str, str]]) -> str:
    """A folder's content hash from its (relative path, file sha256) pairs, in sorted order."""
    digest = hashlib.sha256()
    for name, sha in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update(sha.encode())
    return digest.hexdigest()


def content_state(path: Path) -> tuple[tuple[str, int, int], ...]:
    """The size and modification time (ns) of a batch's files, from `stat` alone (no open):
    equal before and after a read means no writer touched the batch meanwhile. A folder gives
    its files' and sub-folders' states, sorted; a missing path gives ()."""
    try:
        if not path.is_dir():
            st = path.stat()
            return (("", st.st_size, st.st_mtime_ns),)
        entries = [path, *path.rglob("*")]
        states = []
        for p in entries:
            st = p.stat()
            states.append((p.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns))
    except OSError:
        return ()
    return tuple(sorted(states))
