"""A local Prefect server for schedules on one machine.

Prefect's temporary API (used when `PREFECT_API_URL` is unset) runs flows but never fires
schedules, so `aemon serve` needs a real server. `prefect_api()` uses the configured one, or
starts `prefect server start` on 127.0.0.1 with its state under `<AEMON_HOME>/prefect`, waits
until it is healthy, and stops it on exit. While it runs, `<AEMON_HOME>/prefect/aemon-serve.json`
names it, so that `prefect_server()` finds it for a one-off `aemon score`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aemon import config
from aemon.errors import AemonError

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 90.0
SERVE_STATE = "aemon-serve.json"  # under PREFECT_HOME's default, <AEMON_HOME>/prefect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def prefect_server() -> str | None:
    """The Prefect API a one-off run should use, without importing Prefect: `PREFECT_API_URL`,
    else the active Prefect profile's, else the local server of an `aemon serve` that is
    running on this AEMON_HOME; None when there is none (a flow run would then start Prefect's
    temporary server)."""
    return config.prefect_api_url() or _profile_api_url() or _serve_api_url()


def _profile_api_url() -> str | None:
    """PREFECT_API_URL of the active profile in Prefect's profiles file, if it sets one."""
    import tomllib

    path = Path(
        config.env_value("PREFECT_PROFILES_PATH")
        or Path(config.env_value("PREFECT_HOME") or config.aemon_home() / "prefect") / "profiles.toml"
    ).expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = config.env_value("PREFECT_PROFILE") or profiles.get("active")
    url = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(url) if url else None


def _serve_api_url() -> str | None:
    """The API URL of the local server of a running `aemon serve` (its state file names it and
    its process; a file left by a killed serve names a process that is gone)."""
    try:
        state = json.loads((config.aemon_home() / "prefect" / SERVE_STATE).read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    url = str(state.get("api_url", ""))
    return url if url.startswith("http://127.0.0.1:") and _healthy(url, timeout=0.5) else None


GUARD_VAR = "AEMON_CHILD_GUARD"
_guard: subprocess.Popen[bytes] | None = None
_guard_fd: int | None = None


def stop_children_on_exit() -> None:
    """Make every process started from now on (Prefect's temporary API server, the local
    `prefect server start`, flow-run processes) stop when this process ends, even by SIGKILL.

    Marks the environment with a random token that children inherit, and starts
    `flows/reaper.py`, which waits on a pipe that only this process holds open and, once the
    kernel closes it, stops every process that carries the token. Once per process; Linux only
    (elsewhere nothing changes).
    """
    global _guard, _guard_fd
    if _guard is not None or not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return
    marker = f"{GUARD_VAR}={os.getpid()}-{secrets.token_hex(8)}"
    env = config.child_environment(without=(GUARD_VAR,))
    read_fd, write_fd = os.pipe()  # both non-inheritable: children started later hold neither
    try:
        _guard = subprocess.Popen(
            [sys.executable, "-I", str(Path(__file__).with_name("reaper.py")), marker],
            stdin=read_fd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # never holds a caller's output pipe open
            env=env,
            start_new_session=True,  # the terminal's signals are for aemon, not for the reaper
        )
    except OSError as exc:
        os.close(write_fd)
        log.warning("cannot start the process that stops aemon's servers after a crash: %s", exc)
        return
    finally:
        os.close(read_fd)
    _guard_fd = write_fd  # closed by the kernel when this process ends, however it ends
    config.set_environment(**{GUARD_VAR: marker.split("=", 1)[1]})


@contextmanager
def prefect_api(port: int | None = None) -> Iterator[str]:
    """Yield the Prefect API URL: `PREFECT_API_URL` when set, else a local server's.

    Sets `PREFECT_API_URL` in this process for the duration, so import Prefect's client code
    inside the block.
    """
    configured = config.prefect_api_url()
    if configured:
        yield configured
        return
    port = port or _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log_path = config.aemon_home() / "prefect" / "server.log"
    state = log_path.with_name(SERVE_STATE)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    log.info("starting a local Prefect server on %s (log: %s)", api_url, log_path)
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(api_url):
            if proc.poll() is not None:
                raise AemonError(
                    f"the local Prefect server exited with code {proc.returncode}; see {log_path}"
                )
            if time.monotonic() > deadline:
                raise AemonError(
                    f"the local Prefect server was not healthy after {STARTUP_TIMEOUT_S:.0f} s; "
                    f"see {log_path}"
                )
            time.sleep(0.5)
        state.write_text(json.dumps({"api_url": api_url, "pid": os.getpid()}))
        with config.environment(PREFECT_API_URL=api_url):
            yield api_url
    finally:
        state.unlink(missing_ok=True)
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left after 15 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass
    log.info("local Prefect server stopped")
