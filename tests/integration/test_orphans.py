"""A `kill -9` of an aemon command leaves no process behind.

Each case starts the real command in a subprocess with no Prefect configuration, waits until
the Prefect server it starts answers, SIGKILLs the command, and checks that every process it
had started (the server included) is gone within seconds. Whatever the outcome, the test stops
every process it saw, by PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

STARTUP_S = 120.0
GONE_WITHIN_S = 20.0


def _alive(proc: psutil.Process) -> bool:
    """Running, and the same process (a PID can be reused): zombies count as gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _server_port(proc: psutil.Process) -> int | None:
    """The port of a Prefect server process: Prefect's temporary one (uvicorn ... create_app)
    or `prefect server start`, from its command line."""
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return None
    joined = " ".join(cmd)
    if "prefect.server.api.server" not in joined and "server start" not in joined:
        return None
    return int(cmd[cmd.index("--port") + 1]) if "--port" in cmd else None


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@contextmanager
def _silent_tracking_server() -> Iterator[str]:
    """An MLflow tracking URI whose server accepts connections and never answers: the
    command stays inside its flow run (model loading) until it is killed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _kill_and_check(args: list[str], env: dict[str, str], log: Path) -> None:
    seen: list[psutil.Process] = []
    with log.open("wb") as out:
        command = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        parent = psutil.Process(command.pid)
        deadline = time.monotonic() + STARTUP_S
        server = None
        while server is None:
            assert command.poll() is None, f"aemon exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no Prefect server answered:\n{log.read_text()}"
            for child in parent.children(recursive=True):
                port = _server_port(child)
                if port is not None and _healthy(port):
                    server = child
            time.sleep(0.5)
        seen = parent.children(recursive=True)
        assert any("reaper.py" in " ".join(p.cmdline()) for p in seen if _alive(p))

        os.kill(command.pid, signal.SIGKILL)
        command.wait(timeout=10)

        deadline = time.monotonic() + GONE_WITHIN_S
        while any(_alive(p) for p in seen) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [f"{p.pid} {' '.join(p.cmdline())}" for p in seen if _alive(p)]
        assert not left, f"still running {GONE_WITHIN_S:.0f} s after kill -9 of aemon: {left}"
        assert not _alive(server)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait(timeout=10)
        for proc in seen:
            if _alive(proc):
                proc.kill()


@pytest.fixture
def bare_env(aemon_home: Path) -> dict[str, str]:
    """A user's environment: AEMON_HOME only, no Prefect or MLflow settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "AEMON_"))}
    env.update(AEMON_HOME=str(aemon_home), NO_COLOR="1")
    return env


def test_kill_9_of_a_flow_command_leaves_no_prefect_server(tmp_path: Path, bare_env: dict[str, str]) -> None:
    """`aemon recalibrate` runs a flow, so with no Prefect configuration it starts Prefect's
    temporary server, then waits on the silent MLflow server (a one-off `aemon score` no longer
    starts a server at all: it runs without Prefect when none is configured or running)."""
    with _silent_tracking_server() as tracking_uri:
        env = {**bare_env, "MLFLOW_TRACKING_URI": tracking_uri}
        _kill_and_check(["recalibrate", "metrics"], env, tmp_path / "recalibrate.log")


def test_kill_9_of_aemon_serve_leaves_no_prefect_server(tmp_path: Path, bare_env: dict[str, str]) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    args = ["serve", "--inbox", str(inbox), "--model", "metrics", "--every", "3600"]
    _kill_and_check(args, bare_env, tmp_path / "serve.log")
