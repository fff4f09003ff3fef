"""Reading and validating time series: errors name the file, the rows and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aemon import DataError, SchemaError
from aemon.data.timeseries import iter_series, load_series, sliding_windows


def frame(n: int = 10, **extra: object) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "when": pd.date_range("2026-01-01", periods=n, freq="min").astype(str),
            "a": np.arange(n, dtype=float),
            "b": np.arange(n, dtype=float) * 2,
            "tag": ["x"] * n,
            **extra,
        }
    )


def test_schema_is_inferred() -> None:
    schema, chunk = load_series(frame())
    assert schema.timestamp_col == "when" and schema.columns == ("a", "b")
    assert chunk.values.dtype == np.float32 and chunk.values.shape == (10, 2)
    assert chunk.timestamps is not None and chunk.timestamps.dtype == "datetime64[ns]"


def test_named_columns_and_missing_ones() -> None:
    schema, _ = load_series(frame(), timestamp_col="when", columns=["b"])
    assert schema.columns == ("b",)
    with pytest.raises(SchemaError, match=r"\['zzz'\] not found"):
        load_series(frame(), columns=["zzz"])


def test_no_timestamp_column_indexes_by_row() -> None:
    schema, chunk = load_series(pd.DataFrame({"v": np.arange(5.0)}))
    assert schema.timestamp_col is None and chunk.timestamps is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.assign(when=f.when[::-1].to_numpy()), "not sorted"),  # reversed time
        (lambda f: f.assign(when=f.when.where(f.index != 4, f.when[3])), "duplicate timestamp"),
        (lambda f: f.assign(a=f.a.where(f.index != 6, np.nan)), r"NaN/inf .*rows 6"),
        (lambda f: f.assign(b=f.b.where(f.index != 2, np.inf)), r"NaN/inf .*\['b'\]"),
        (lambda f: f.assign(when=f.when.where(f.index != 7, "not a date")), "unparseable"),
    ],
)
def test_bad_rows_are_named(tmp_path: Path, mutate: object, message: str) -> None:
    path = tmp_path / "bad.csv"
    mutate(frame()).to_csv(path, index=False)  # type: ignore[operator]
    with pytest.raises(DataError, match=message) as err:
        load_series(path, timestamp_col="when")
    assert str(path) in str(err.value)


@pytest.mark.parametrize("fill", ["ffill", "interpolate", "zero"])
def test_fill_repairs_missing_values(fill: str) -> None:
    f = frame().assign(a=lambda d: d.a.where(d.index != 5, np.nan))
    _, chunk = load_series(f, fill=fill)
    expected = {"ffill": 4.0, "interpolate": 5.0, "zero": 0.0}[fill]
    assert chunk.values[5, 0] == expected


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunked_reading_matches_whole_file(tmp_path: Path, suffix: str) -> None:
    f = frame(1_000)
    path = tmp_path / f"s{suffix}"
    f.to_csv(path, index=False) if suffix == ".csv" else f.to_parquet(path)
    _, whole = load_series(path)
    _, chunks = iter_series(path, chunk_rows=128)
    parts = list(chunks)
    assert len(parts) > 1 and parts[1].first_row == len(parts[0].values)
    np.testing.assert_array_equal(np.concatenate([p.values for p in parts]), whole.values)


def test_unsorted_across_chunk_boundary_is_caught(tmp_path: Path) -> None:
    f = frame(600)
    f.loc[300:, "when"] = f.when[:300].to_numpy()  # second half repeats the first
    path = tmp_path / "s.parquet"
    f.to_parquet(path)
    _, chunks = iter_series(path, chunk_rows=300)
    with pytest.raises(DataError, match="record 300"):
        list(chunks)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_series(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("when,a\n")
    with pytest.raises(DataError, match="no rows"):
        load_series(tmp_path / "empty.csv")


def test_sliding_windows_are_views() -> None:
    values = np.arange(20, dtype=np.float32).reshape(10, 2)
    w = sliding_windows(values, 4, stride=2)
    assert w.shape == (4, 4, 2) and np.shares_memory(w, values)
    np.testing.assert_array_equal(w[1], values[2:6])
    with pytest.raises(DataError, match="fewer than the window"):
        sliding_windows(values, 11)
