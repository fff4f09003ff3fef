"""Scores one synthetic batch into the anomaly database, as the score flow would.

The crash and race tests in test_store.py run it as a real process:

    python store_worker.py URL --rows N [--pause-at-half SECONDS] [--barrier DIR --peers K]

It prints `CLAIMED <batch id>` or `SKIPPED`, then `HALF <rows written>` when it pauses inside
complete_batch's open transaction (`--pause-at-half`), and `INSERTED <rows>` at the end.
`--barrier`: after claiming (or being refused), wait until K workers got there, so that a
claimer completes while its peers are still alive.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import types
from pathlib import Path
from typing import Any


def _import_store_without_package_init() -> type[Any]:
    """aemon.store, skipping aemon/__init__.py: it imports the Detector, hence torch (2-3 s a
    process), which the store does not use. Keeps the process tests fast."""
    spec = importlib.util.find_spec("aemon")
    assert spec is not None and spec.submodule_search_locations is not None
    package = types.ModuleType("aemon")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("aemon", package)
    from aemon.store import AnomalyStore

    return AnomalyStore


AnomalyStore = _import_store_without_package_init()

CONTENT_SHA256 = "5e" * 32
MODEL_NAME = "race"
MODEL_VERSION = "1"


def record_key(i: int) -> str:
    return f"r{i:06d}"


def make_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "record_key": record_key(i),
            "score": 2.0 + i / n,
            "threshold": 2.0,
            "p_value": 1.0 / (i + 2),
            "details": {"i": i},
        }
        for i in range(n)
    ]


def wait_for_peers(barrier: Path, peers: int, timeout_s: float = 30.0) -> None:
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + timeout_s
    while len(list(barrier.iterdir())) < peers:
        if time.monotonic() > deadline:
            sys.exit(f"barrier: fewer than {peers} workers after {timeout_s} s")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--pause-at-half", type=float, default=0.0)
    parser.add_argument("--barrier", type=Path)
    parser.add_argument("--peers", type=int, default=2)
    args = parser.parse_args()

    store = AnomalyStore(args.url)
    batch = store.claim_batch(
        source="inbox/race.csv",
        content_sha256=CONTENT_SHA256,
        model_name=MODEL_NAME,
        model_version=MODEL_VERSION,
    )
    if batch is None:
        print("SKIPPED", flush=True)
        if args.barrier is not None:  # a peer that claimed waits for everyone to get here
            wait_for_peers(args.barrier, args.peers)
        return
    print(f"CLAIMED {batch.id}", flush=True)
    if args.barrier is not None:
        wait_for_peers(args.barrier, args.peers)

    paused = False

    def on_progress(n_written: int) -> None:
        nonlocal paused
        if args.pause_at_half and not paused and n_written >= args.rows // 2:
            paused = True
            print(f"HALF {n_written}", flush=True)
            time.sleep(args.pause_at_half)  # the test SIGKILLs us here

    inserted = store.complete_batch(
        batch.id, make_rows(args.rows), n_records=2 * args.rows, on_progress=on_progress
    )
    print(f"INSERTED {inserted}", flush=True)
    store.close()


if __name__ == "__main__":
    main()
