"""The README's Python examples run as written, and print what the README says they print."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def check_quickstart(ns: dict[str, Any], out: str, folder: Path) -> None:
    """The first example: its summary line tells the truth, its events table has the columns
    it asks for, and the two incidents it plants are found (a detector that flags nothing, or
    everything, fails here)."""
    det, res, batch = ns["det"], ns["res"], ns["batch"]
    summary = re.search(r"threshold ([\d.]+) \((\w+)\), (\d+) of (\d+) points flagged", out)
    assert summary is not None, out
    assert float(summary[1]) == pytest.approx(det.threshold_, abs=1e-4)
    assert summary[2] == det.threshold_info_.method
    assert (int(summary[3]), int(summary[4])) == (res.n_flagged, len(batch))
    assert 0 < res.n_flagged < 0.2 * len(batch)
    lines = out.splitlines()
    header = lines[1].split()  # pandas may elide middle columns as "..." on a narrow console
    assert header[0] == "start" and header[-1] == "contributions" and len(res.events) > 0
    assert [line.split()[0] for line in lines[2 : 2 + len(res.events)]] == [
        str(i) for i in range(len(res.events))
    ]
    events = list(zip(res.events.start_index, res.events.end_index, strict=True))
    found = [i for i in ns["incidents"] if any(a <= i.end and i.start <= b for a, b in events)]
    assert [i.kind for i in found] == [i.kind for i in ns["incidents"]] == ["spike", "level_shift"]
    assert (folder / "my-detector" / "manifest.json").exists()


# What each block must print or leave behind, by its place in the README.
CHECKS = {0: check_quickstart}


def test_every_block_is_checked() -> None:
    assert BLOCKS and set(CHECKS) == set(range(len(BLOCKS)))


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(BLOCKS[index], str(README), "exec"), namespace)
    CHECKS[index](namespace, capsys.readouterr().out, tmp_path)
