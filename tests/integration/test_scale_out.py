"""The scale-out stack, for real on 127.0.0.1: a Prefect server and an MLflow server, both on
PostgreSQL, a Prefect worker on a process work pool, and a Dask scheduler with two workers.

The commands are the README's "Scaling out" recipe, in its order (a test below checks that
the README shows each one, with its default ports and paths): train through the servers,
deploy from deploy/prefect.yaml, start a worker, then run score-inbox once plainly and once
on Dask. Rows in PostgreSQL, files in done/ and quarantine/, and the registered model are
checked. Every process started here is stopped by its process group, pass or fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest
import sqlalchemy as sa

from aemon.synthetic import make_series

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent

# The README's recipe, as templates: the README shows them with DEFAULTS filled in.
SERVERS = [
    "PREFECT_API_DATABASE_CONNECTION_URL={pg_async}/{db_prefect} "
    "prefect server start --host 127.0.0.1 --port {prefect_port}",
    "mlflow server --host 127.0.0.1 --port {mlflow_port} --backend-store-uri {pg}/{db_mlflow} "
    "--artifacts-destination {srv}/mlartifacts",
    "dask scheduler --host 127.0.0.1 --port {dask_port}",
    "dask worker tcp://127.0.0.1:{dask_port} --nworkers 2 --nthreads 1",
]
SETTINGS = {
    "PREFECT_API_URL": "http://127.0.0.1:{prefect_port}/api",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:{mlflow_port}",
    "AEMON_DATABASE_URL": "{pg}/{db_aemon}",
    "AEMON_PROJECT_DIR": "{project}",
    "AEMON_INBOX": "{srv}/inbox",
    "AEMON_MODEL": "cpu",
    "AEMON_REFERENCE": "{srv}/reference.csv",
}
SETUP = [
    'aemon train "$AEMON_REFERENCE" --name "$AEMON_MODEL"',
    "prefect work-pool create aemon --type process",
    "prefect --no-prompt deploy --all --prefect-file deploy/prefect.yaml",
]
WORKER = "prefect worker start --pool aemon"
RUN_PLAIN = "prefect deployment run score-inbox/score-inbox --watch"
RUN_DASK = "prefect deployment run score-inbox/score-inbox --param dask=tcp://127.0.0.1:{dask_port} --watch"
DEFAULTS = {
    "pg": "postgresql+psycopg://postgres@127.0.0.1:5432",
    "pg_async": "postgresql+asyncpg://postgres@127.0.0.1:5432",
    "db_prefect": "prefect",
    "db_mlflow": "mlflow",
    "db_aemon": "aemon",
    "prefect_port": "4200",
    "mlflow_port": "5000",
    "dask_port": "8786",
    "srv": "/srv/aemon",
    "project": "$PWD",
}


def test_the_readme_shows_the_recipe_this_test_runs() -> None:
    section = (ROOT / "README.md").read_text().split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    settings = [f"{k}={v}" for k, v in SETTINGS.items()]
    for template in [*SERVERS, *settings, *SETUP, WORKER, RUN_PLAIN, RUN_DASK]:
        assert template.format(**DEFAULTS) in section, template


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


class Stack:
    """Processes started for one test, each in its own process group, all stopped at the end."""

    def __init__(self, folder: Path, values: dict[str, str]) -> None:
        self.folder, self.values = folder, values
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.groups: list[int] = []  # every process group started here, stopped or not
        self.logs: list[IO[bytes]] = []
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PREFECT_HOME": str(folder / "prefect-home"),  # never the user's Prefect profile
            "AEMON_HOME": str(folder / "aemon-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "true",
        }
        self.env.pop("PREFECT_API_URL", None)

    def command(self, template: str) -> str:
        return template.format(**self.values)

    def start(self, name: str, template: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("wb")
        self.logs.append(log)
        proc = subprocess.Popen(
            self.command(template),
            shell=True,
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with everything it starts
        )
        self.processes.append((name, proc))
        self.groups.append(proc.pid)  # its own session: the group id is the leader's PID
        return proc

    def run(self, template: str, timeout: float = 600) -> str:
        out = subprocess.run(
            self.command(template),
            shell=True,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert out.returncode == 0, f"{template}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [n for n, p in self.processes if p.poll() is not None]
            assert not dead, f"{dead} exited; see {self.folder}"
            time.sleep(1)
        raise AssertionError(f"{what} not ready after {timeout} s; logs in {self.folder}")

    def stop(self) -> None:
        """Stop every process group started here, the ones stopped or killed already included."""
        self._stop_groups(self.groups[::-1])
        for _, proc in self.processes:  # the groups' leaders are this process's children: reap
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for log in self.logs:
            log.close()

    def stop_one(self, name: str) -> None:
        """Stop the process started as `name` and everything in its group, and forget it."""
        [(_, proc)] = [(n, p) for n, p in self.processes if n == name]
        self._stop_groups([proc.pid])
        proc.wait(timeout=10)
        self.processes.remove((name, proc))

    def _stop_groups(self, groups: list[int], grace: float = 20) -> None:
        """SIGTERM to each group, then SIGKILL to what is still running after `grace` s.

        It waits for every process of the groups, not for their leaders: a leader is the shell
        that ran the command, and it exits at once, while Prefect 3.9's `prefect worker start`
        does not exit on its first SIGTERM (it stops taking runs and keeps running; a second
        one kills it). Waiting for the shell alone left such a worker running for ever."""
        for signum, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            for group in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signum)
            deadline = time.monotonic() + wait_s
            while _members(groups) and time.monotonic() < deadline:
                time.sleep(0.2)

    def left_running(self) -> list[str]:
        """Processes still alive in any process group started here (zombies count as gone)."""
        left = []
        for proc in _members(self.groups):
            with contextlib.suppress(psutil.Error):
                left.append(f"{proc.pid}: {' '.join(proc.cmdline())[:120]}")
        return left


def _members(groups: list[int]) -> list[psutil.Process]:
    """The live processes (zombies count as gone) of the process groups `groups`."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) in groups and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


@pytest.fixture
def databases(postgres_admin_url: str) -> Iterator[dict[str, str]]:
    """Three new PostgreSQL databases (Prefect, MLflow, aemon), dropped afterwards."""
    tag = secrets.token_hex(4)
    names = {key: f"aemon_stack_{key}_{tag}" for key in ("prefect", "mlflow", "aemon")}
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names.values():
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(postgres_admin_url)
    base = f"{url.username or 'postgres'}@{url.host or '127.0.0.1'}:{url.port or 5432}"
    try:
        yield {
            "pg": f"postgresql+psycopg://{base}",
            "pg_async": f"postgresql+asyncpg://{base}",
            **{f"db_{key}": name for key, name in names.items()},
        }
    finally:
        with admin.connect() as conn:
            for name in names.values():
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _dask_ran(address: str) -> bool:
    """Whether the scheduler at `address` ever ran a process_batch task."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        prefixes = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.task_prefixes))
    return "process_batch" in prefixes


def _kill_a_worker_mid_run_then_rerun(stack: Stack, inbox: Path) -> None:
    """SIGKILL of the Prefect worker and its flow-run process after the batch's rows are
    committed, before its drift report: no process is left, the killed run does not block the
    next one, and the next worker finishes the batch (its monitoring included) exactly once."""
    stack.stop_one("prefect-worker")  # the worker started above, and all it started
    make_series(300, 2, seed=30)[0].to_csv(inbox / "killed.csv", index=False)
    doomed = stack.start("prefect-worker-killed", WORKER, AEMON_FAULT_PAUSE="after-write:600")
    stack.run(RUN_PLAIN.removesuffix(" --watch"))
    log = stack.folder / "prefect-worker-killed.log"
    stack.wait_until(
        "the run to pause after its write", lambda: b"pausing at after-write" in log.read_bytes()
    )
    tree = [doomed.pid, *(c.pid for c in psutil.Process(doomed.pid).children(recursive=True))]
    for pid in tree:  # worker, flow-run process and whatever they started, all at once
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    doomed.wait(timeout=30)
    stack.processes.remove(("prefect-worker-killed", doomed))
    time.sleep(2)
    alive = [pid for pid in tree if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert not alive, f"left running after the kill: {alive}"
    assert (inbox / "killed.csv").exists()  # not filed: its run died

    stack.start("prefect-worker-2", WORKER)
    assert "Completed" in stack.run(RUN_PLAIN)
    assert (inbox / "done" / "killed.csv").exists()
    engine = sa.create_engine(stack.env["AEMON_DATABASE_URL"])
    with engine.connect() as conn:
        batch_id, n_flagged, monitored = conn.exec_driver_sql(
            "SELECT id, n_flagged, monitored_at FROM batches WHERE source LIKE '%%killed.csv'"
        ).one()
        n_rows = conn.exec_driver_sql(
            f"SELECT count(*) FROM anomalies WHERE batch_id = {batch_id}"
        ).scalar_one()
        n_reports = conn.exec_driver_sql(
            f"SELECT count(*) FROM drift_reports WHERE batch_id = {batch_id}"
        ).scalar_one()
    engine.dispose()
    assert (n_rows, n_reports) == (n_flagged, 1) and monitored is not None


def test_servers_worker_and_dask_score_an_inbox(tmp_path: Path, databases: dict[str, str]) -> None:
    srv = tmp_path / "srv"
    (srv / "inbox").mkdir(parents=True)
    values = {
        **databases,
        "prefect_port": str(_free_port()),
        "mlflow_port": str(_free_port()),
        "dask_port": str(_free_port()),
        "srv": str(srv),
        "project": str(ROOT),
    }
    reference, _, _ = make_series(2000, 2, seed=0)
    reference.to_csv(srv / "reference.csv", index=False)
    stack = Stack(tmp_path, values)
    try:
        # First the settings: the Dask workers score batches, so they need them too.
        stack.env.update({k: stack.command(v) for k, v in SETTINGS.items()})
        names = ("prefect-server", "mlflow-server", "dask-scheduler", "dask-workers")
        for name, template in zip(names, SERVERS, strict=True):
            stack.start(name, template)
        stack.wait_until("the MLflow server", lambda: _healthy(f"{stack.env['MLFLOW_TRACKING_URI']}/health"))
        stack.wait_until("the Prefect server", lambda: _healthy(f"{stack.env['PREFECT_API_URL']}/health"))

        out = stack.run(SETUP[0].replace('--name "$AEMON_MODEL"', '--name "$AEMON_MODEL" --epochs 2'))
        assert "Registered cpu/1" in out and stack.env["MLFLOW_TRACKING_URI"] in out
        for template in SETUP[1:]:
            stack.run(template)
        # The deployment's cron would race this test for the inbox: runs are started by hand.
        stack.run("prefect --no-prompt deployment schedule pause --all")
        stack.start("prefect-worker", WORKER)

        inbox = srv / "inbox"
        for i in range(2):
            make_series(300, 2, seed=10 + i)[0].to_csv(inbox / f"plain{i}.csv", index=False)
        (inbox / "bad.csv").write_text("timestamp,nothing\n2026-01-01,1\n")
        assert "Completed" in stack.run(RUN_PLAIN)
        assert sorted(p.name for p in (inbox / "done").iterdir()) == ["plain0.csv", "plain1.csv"]
        assert [p.name for p in (inbox / "quarantine").iterdir()] == ["bad.csv"]

        _kill_a_worker_mid_run_then_rerun(stack, inbox)

        for i in range(3):
            make_series(300, 2, seed=20 + i)[0].to_csv(inbox / f"dask{i}.csv", index=False)
        assert "Completed" in stack.run(RUN_DASK)
        assert _dask_ran(f"tcp://127.0.0.1:{values['dask_port']}")
        assert len(list((inbox / "done").iterdir())) == 6
        assert not [p for p in inbox.iterdir() if p.is_file()]

        engine = sa.create_engine(stack.env["AEMON_DATABASE_URL"])
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT source, status, n_records, model_name, model_version FROM batches ORDER BY id"
            ).all()
            reports = conn.exec_driver_sql("SELECT count(*) FROM drift_reports").scalar_one()
        engine.dispose()
        by_name = {Path(r[0]).name: r for r in rows}
        assert len(rows) == 7 and by_name["bad.csv"][1] == "quarantined"
        assert all(r[1:] == ("done", 300, "cpu", "1") for n, r in by_name.items() if n != "bad.csv")
        assert reports == 6  # every scored batch got its drift report: on Dask, after a kill

        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=stack.env["MLFLOW_TRACKING_URI"])
        assert str(client.get_model_version_by_alias("cpu", "champion").version) == "1"
    finally:
        stack.stop()
    alive = [n for n, p in stack.processes if p.poll() is None]
    assert not alive, alive
    assert not stack.left_running(), stack.left_running()  # nothing orphaned, stopped ones included
    assert not re.search(r"Traceback", (tmp_path / "prefect-worker.log").read_text()), "worker log"
