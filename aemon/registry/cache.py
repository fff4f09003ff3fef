"""Per-process caches of what registered versions hold. A version never changes, so a
detector or a drift reference profile read once stays good for the life of the process."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

import pandas as pd

if TYPE_CHECKING:
    from aemon.detector import Detector

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_CACHED_DETECTORS = 8
MAX_CACHED_PROFILES = 64


class VersionCache(Generic[K, V]):
    """A thread-safe least-recently-used map of at most `size` entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# (tracking URI, name, version, device) -> loaded detector
detectors: VersionCache[tuple[str, str, str, str], Detector] = VersionCache(MAX_CACHED_DETECTORS)
# (tracking URI, run id) -> the drift reference profile, None when the run has none
drift_references: VersionCache[tuple[str, str], pd.DataFrame | None] = VersionCache(MAX_CACHED_PROFILES)
