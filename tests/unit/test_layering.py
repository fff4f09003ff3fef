"""The layering and ownership rules of DESIGN.md, checked on the source and at run time.

`aemon` never imports Prefect or `flows`; each heavy outside library has one owner in the
library, so a change of that library's API touches one place. Imports are read with `ast`,
inside functions and `TYPE_CHECKING` blocks too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

import aemon

PACKAGE = Path(aemon.__file__).parent

# (outside package, the aemon paths allowed to import it, as patterns matched against the path
# below aemon/: "registry/*" covers the registry package).
RULES = [
    pytest.param("prefect", (), id="prefect: never in the library"),
    pytest.param("flows", (), id="flows: never in the library (flows -> aemon only)"),
    pytest.param("mlflow", ("registry/*",), id="mlflow: registry only"),
    pytest.param("evidently", ("drift/evidently_report.py",), id="evidently: drift's Evidently report only"),
    pytest.param("apprise", ("alerts.py",), id="apprise: alerts only"),
    pytest.param("sqlalchemy", ("store/*", "migrations/*"), id="sqlalchemy: store and migrations"),
    pytest.param("alembic", ("store/*", "migrations/*"), id="alembic: store and migrations"),
    pytest.param("fastapi", ("ui/*",), id="fastapi: ui only"),
    pytest.param("starlette", ("ui/*",), id="starlette: ui only"),
    pytest.param("jinja2", ("ui/*",), id="jinja2: ui only"),
    pytest.param("uvicorn", (), id="uvicorn: never in the library (the CLI serves the app)"),
]


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file, wherever it stands."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def importers_of(package: str) -> set[str]:
    return {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if package in imported_packages(path)
    }


@pytest.mark.parametrize(("package", "owners"), RULES)
def test_only_the_owner_imports(package: str, owners: tuple[str, ...]) -> None:
    importers = importers_of(package)
    strays = {p for p in importers if not any(fnmatch(p, o) for o in owners)}
    assert not strays, f"{package} imported outside its owner {owners or '(none)'}: {sorted(strays)}"
    if owners:  # the owner does use it: a scan that found nothing would pass by accident
        assert importers


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import os.path\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import flows.cli\n"
        "def f():\n    from prefect import flow\n    from . import sibling\n"
    )
    assert imported_packages(source) == {"os", "typing", "flows", "prefect"}


def test_importing_every_aemon_module_loads_neither_prefect_nor_flows() -> None:
    """At run time, in a fresh interpreter: import every module of the library and look."""
    script = """
import importlib, json, pkgutil, sys
import aemon
names = [m.name for m in pkgutil.walk_packages(aemon.__path__, "aemon.")
         if not m.name.startswith("aemon.migrations")]  # Alembic scripts, run by Alembic only
for name in names:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("prefect", "flows"))
print(json.dumps({"imported": names, "loaded": loaded}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"aemon.detector", "aemon.registry", "aemon.store", "aemon.benchmarks.speed"} <= set(
        result["imported"]
    )
    assert result["loaded"] == []


def environment_uses(path: Path) -> list[int]:
    """Lines that read or change the process environment (`os.environ`, `os.getenv`, ...)."""
    names = {"environ", "environb", "getenv", "putenv", "unsetenv"}
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if (isinstance(node, ast.Attribute) and node.attr in names)
        or (isinstance(node, ast.ImportFrom) and node.module == "os" and {a.name for a in node.names} & names)
    )


def test_only_config_reads_the_environment() -> None:
    """Settings come from aemon/config.py (documented there); nothing else reads os.environ."""
    roots = [PACKAGE, PACKAGE.parent / "flows"]
    users = {
        f"{path.relative_to(PACKAGE.parent).as_posix()}:{line}"
        for root in roots
        for path in root.rglob("*.py")
        for line in environment_uses(path)
        if path != PACKAGE / "config.py"
    }
    assert not users, f"read the environment through aemon.config: {sorted(users)}"
    assert environment_uses(PACKAGE / "config.py")  # the scan finds what is there
