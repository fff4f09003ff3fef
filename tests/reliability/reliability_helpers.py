"""Plain helpers of the fault-injection suite (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aemon.synthetic import make_series


def incident_batch(path: Path, n: int = 600, seed: int = 2) -> Path:
    """A batch with a spike and a level shift: records are flagged, so it gets an alert."""
    make_series(n, 2, seed=seed, incidents=("spike", "level_shift"))[0].to_csv(path, index=False)
    return path


def bare_env(aemon_home: Path, **settings: str) -> dict[str, str]:
    """A user's environment for an `aemon` subprocess: no Prefect server, so a one-off
    `aemon score` runs the flow's code directly; `settings` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "AEMON_"))}
    env.update(AEMON_HOME=str(aemon_home), AEMON_SETTLE_SECONDS="0", COLUMNS="200", NO_COLOR="1")
    env.update(settings)
    return env


def aemon_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def run_aemon(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        aemon_command(*args), env=env, text=True, capture_output=True, timeout=timeout, check=False
    )


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Webhook:
    """A local HTTP receiver of `json://` alerts; bodies are kept."""

    port: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def batches(self) -> list[int]:
        """The batch id of each alert received, in order."""
        return [body["aemon"]["batch_id"] for body in self.received]
