"""The modality adapters: found by name, by batch and by input, and the only code that matches
a modality's name (the CLI's choices and the quickstart's demo data excepted)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import aemon
from aemon.data.images import ImageBatch
from aemon.data.timeseries import SeriesBatch
from aemon.errors import ConfigError, DataError
from aemon.modalities import ADAPTERS, MODALITIES, adapter_for, adapter_of, infer_adapter

ROOT = Path(aemon.__file__).parent.parent
# Where a modality's name may be matched: the adapters, and the command line's boundary.
NAME_OWNERS = ("aemon/modalities/", "flows/cli.py", "flows/quickstart.py")


def test_adapters_are_found_by_name_and_by_batch() -> None:
    assert MODALITIES == ("timeseries", "image")
    for adapter in ADAPTERS:
        assert adapter_for(adapter.name) is adapter
    assert (
        adapter_of(SeriesBatch(values=np.zeros((3, 1)), timestamps=None, columns=("x",))).name == "timeseries"
    )
    assert adapter_of(ImageBatch(keys=["a", "b"], images=np.zeros((2, 1, 4, 4), np.float32))).name == "image"
    with pytest.raises(ConfigError, match="modality must be one of"):
        adapter_for("audio")


@pytest.mark.parametrize(
    ("data", "modality"),
    [
        (pd.DataFrame({"x": [1.0, 2.0]}), "timeseries"),  # a frame is a series
        (np.zeros((10, 2)), "timeseries"),  # (rows, columns)
        (np.zeros((3, 8, 8)), "image"),  # (N, H, W)
        ("ref.csv", "timeseries"),
        ("ref.parquet", "timeseries"),
        ("digits.npy", "image"),
        ("train-images-idx3-ubyte.gz", "image"),
    ],
)
def test_the_modality_is_inferred_from_the_input(data: object, modality: str, tmp_path: Path) -> None:
    if isinstance(data, str):  # a file name: the file must exist to be read as a series
        data = tmp_path / data
        data.touch()
    assert infer_adapter(data).name == modality  # type: ignore[arg-type]


def test_an_input_of_no_modality_names_the_choices() -> None:
    with pytest.raises(DataError, match="pass modality='timeseries' or 'image'"):
        infer_adapter("notes.txt")


def modality_comparisons(path: Path) -> list[int]:
    """Lines that compare something with a modality's name (==, !=, in)."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Compare)
        and any(isinstance(c, ast.Constant) and c.value in MODALITIES for c in [node.left, *node.comparators])
    )


def test_only_the_adapters_match_a_modality_name() -> None:
    found = {
        f"{path.relative_to(ROOT).as_posix()}:{line}"
        for root in (ROOT / "aemon", ROOT / "flows")
        for path in root.rglob("*.py")
        if not path.relative_to(ROOT).as_posix().startswith(NAME_OWNERS)
        for line in modality_comparisons(path)
    }
    assert not found, f"ask the modality adapter (aemon.modalities) instead: {sorted(found)}"
    assert modality_comparisons(ROOT / "flows" / "quickstart.py")  # the scan finds what is there
