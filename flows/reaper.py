"""Stop what an `aemon` process started once that process is gone, however it ended.

Prefect's temporary API server (`uvicorn ... prefect.server.api.server`) and the local
`prefect server start` of `aemon serve` are child processes. A `kill -9` of aemon gives them no
chance to be stopped: they stay, under PID 1, for ever (about 220 MB each).

`flows.server.stop_children_on_exit()` marks the aemon process's environment with a random
token, which every process it starts afterwards inherits, and starts this script with the read
end of a pipe as its stdin. The kernel closes the write end when aemon ends, even on SIGKILL;
this script then reads end-of-file, sends SIGTERM to every process whose environment carries
the token (SIGKILL to those still there after a grace period), and exits.

Standard library only, and run as a script (`python -I reaper.py TOKEN`): it starts in tens of
milliseconds and imports nothing of aemon, Prefect or torch. Linux only (it reads /proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

GRACE_S = 10.0


def marked_processes(marker: bytes) -> list[int]:
    """PIDs of this user's processes whose environment holds `marker`, this one excepted."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:  # gone meanwhile, or not ours
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry))
    return found


def stop(pids: list[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM each process, then SIGKILL those that are still there after `grace_s`."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if _running(pid)]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[-1].split()[0] != b"Z"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: reaper.py NAME=TOKEN", file=sys.stderr)  # noqa: T201 (a bare script: no logging set up)
        return 2
    marker = argv[1].encode()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is for aemon
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while sys.stdin.buffer.read(65536):  # returns b"" once aemon has ended
        pass
    # Marked processes can start more marked processes while they stop: a second pass.
    for _ in range(2):
        victims = marked_processes(marker)
        if not victims:
            break
        stop(victims)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
