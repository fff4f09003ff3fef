"""aemon's environment defaults: set once by the application before Prefect reads them, never
by importing the library. Each case runs in a fresh interpreter with a bare environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DEFAULTS = ("PREFECT_HOME", "MLFLOW_DISABLE_TELEMETRY", "MPLCONFIGDIR", "DO_NOT_TRACK")


def run_python(code: str, home: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "AEMON_"))}
    for key in (*DEFAULTS, "HYPOTHESIS_STORAGE_DIRECTORY"):
        env.pop(key, None)
    env["AEMON_HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=home, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_importing_the_library_changes_no_environment_variable(tmp_path: Path) -> None:
    # Only the variables aemon knows: torch and scikit-learn set their own (KMP_...) on import.
    code = f"""
import importlib, json, os, pkgutil
import aemon
before = dict(os.environ)
for m in pkgutil.walk_packages(aemon.__path__, "aemon."):
    if not m.name.startswith("aemon.migrations"):
        importlib.import_module(m.name)
ours = ("AEMON_", "PREFECT_", "MLFLOW_", "MPLCONFIGDIR", "DO_NOT_TRACK", "GIT_PYTHON")
changed = sorted(k for k in set(before) | set(os.environ)
                 if k.startswith(ours) and before.get(k) != os.environ.get(k))
print(json.dumps({{"changed": changed, "set": [k for k in {DEFAULTS!r} if k in os.environ]}}))
"""
    result = run_python(code, tmp_path)
    assert result == {"changed": [], "set": []}
    assert list(tmp_path.iterdir()) == []  # and writes nothing


def test_a_flow_module_gets_prefect_home_under_aemon_home(tmp_path: Path) -> None:
    """The deployment entrypoint's module (flows/score.py) and the CLI import `flows` first:
    Prefect, imported after, reads PREFECT_HOME under AEMON_HOME."""
    code = """
import json, os
import flows.score
import prefect.settings
print(json.dumps({"prefect_home": str(prefect.settings.PREFECT_HOME.value()),
                  "telemetry_off": os.environ.get("MLFLOW_DISABLE_TELEMETRY")}))
"""
    result = run_python(code, tmp_path)
    assert result == {"prefect_home": str(tmp_path / "prefect"), "telemetry_off": "true"}


def test_the_users_environment_wins(tmp_path: Path) -> None:
    code = f"""
import json, os
os.environ["PREFECT_HOME"] = {str(tmp_path / "mine")!r}
import flows
print(json.dumps({{"prefect_home": os.environ["PREFECT_HOME"]}}))
"""
    assert run_python(code, tmp_path) == {"prefect_home": str(tmp_path / "mine")}
