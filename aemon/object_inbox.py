"""Inboxes in object stores (`s3://bucket/prefix`, any fsspec URL): the only user of fsspec.

An object store has no rename and no partial files (an object appears whole), so a run
mirrors the inbox's new objects into a local folder, scores that folder as a local inbox (the
same rules: one read per batch, exactly once per content and model, quarantine), then files
each object in the store under `done/` or `quarantine/` beside it: copied there, then removed
from the inbox. Nothing is deleted otherwise. Hidden names (`.`, `_`) are left alone.
Credentials and endpoints come from the store's own settings (for S3: the AWS_* variables,
`AWS_ENDPOINT_URL` for an S3-compatible server).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aemon import config
from aemon.errors import ConfigError, DataError, ScoringError, safe_text

DONE_DIR, QUARANTINE_DIR = "done", "quarantine"


def is_object_store(inbox: str) -> bool:
    """Whether `inbox` names an object store (`scheme://…`) rather than a local folder."""
    scheme, sep, _ = inbox.partition("://")
    return bool(sep) and scheme not in ("", "file")


class ObjectInbox:
    """One inbox URL: its new objects, mirrored into a local folder, and filed away after."""

    def __init__(self, url: str, mirror_root: Path) -> None:
        import fsspec

        try:
            self.fs, root = fsspec.core.url_to_fs(url, **config.object_store_options(url))
        except (ImportError, ValueError) as exc:  # no fsspec driver for the scheme, or a bad URL
            raise ConfigError(f"cannot open the inbox {safe_text(url)}: {exc}") from exc
        self.url, self.root = url.rstrip("/"), root.rstrip("/")
        # A readable mirror path (store/bucket/prefix), one per run: two runs on one machine
        # must not share (or clear) each other's files.
        tag = hashlib.sha256(self.url.encode()).hexdigest()[:8]
        run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.mirror = mirror_root / f"{self.url.split('://', 1)[0]}-{tag}" / run / Path(self.root.lstrip("/"))
        self._run_folder = self.mirror.parents[len(Path(self.root.lstrip("/")).parts) - 1]

    def new_objects(self) -> list[dict[str, Any]]:
        """Objects directly in the inbox, oldest first; not done/, quarantine/ or hidden."""
        try:
            entries = self.fs.ls(self.root, detail=True, refresh=True)
        except FileNotFoundError:
            raise DataError("inbox not found", source=self.url) from None
        except Exception as exc:  # the store's own errors (unreachable, denied) have no common base
            raise ScoringError(f"cannot list the inbox {safe_text(self.url)}: {safe_text(exc)}") from exc
        found = []
        for entry in entries:
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry.get("type") != "file" or name.startswith((".", "_")):
                continue
            found.append({**entry, "basename": name})
        return sorted(found, key=lambda e: (_modified(e), e["basename"]))

    def pull(self) -> Path:
        """Mirror the new objects into this run's local folder and return it, to score as an
        inbox (`close` removes it: the store holds the truth)."""
        self.mirror.mkdir(parents=True)
        for entry in self.new_objects():
            local = self.mirror / entry["basename"]
            self.fs.get(entry["name"], str(local))
            stamp = _modified(entry)  # the object's age, so the settle rule sees an old file
            if stamp:
                os.utime(local, (stamp, stamp))
        return self.mirror

    def close(self) -> None:
        shutil.rmtree(self._run_folder, ignore_errors=True)

    def file_away(self, name: str, quarantined: bool) -> str | None:
        """Move the object `name` to done/ or quarantine/ in the store (a name there already
        gets a time suffix); returns its new URL, or None when another run moved it first."""
        where = QUARANTINE_DIR if quarantined else DONE_DIR
        source = f"{self.root}/{name}"
        target = f"{self.root}/{where}/{name}"
        if self.fs.exists(target):
            stem, dot, suffix = name.partition(".")
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            target = f"{self.root}/{where}/{stem}.{stamp}{dot}{suffix}"
        try:
            self.fs.copy(source, target)
            self.fs.rm(source)
        except FileNotFoundError:
            return None
        return f"{self.url.split('://', 1)[0]}://{target}"


def _modified(entry: dict[str, Any]) -> float:
    value = entry.get("LastModified") or entry.get("mtime") or entry.get("last_modified")
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, int | float) else 0.0
