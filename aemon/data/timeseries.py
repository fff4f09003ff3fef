"""Time-series input: CSV or Parquet files, or DataFrames, into validated float32 arrays.

A series has one timestamp column (named, or the first column that parses as datetimes) and
one or more numeric value columns. Rows must be sorted by time with no duplicate timestamps;
NaN/inf values are an error naming the rows unless `fill` says how to repair them.
Large files are read in chunks (pyarrow record batches), so memory stays bounded.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from aemon.data.source import ContentHash, open_hashed
from aemon.errors import ConfigError, DataError, SchemaError, safe_text

FillMethod = Literal["ffill", "interpolate", "zero"]
FILL_METHODS: tuple[str, ...] = ("ffill", "interpolate", "zero")
TIMESERIES_SUFFIXES = (".csv", ".parquet", ".pq", ".csv.gz")
DEFAULT_CHUNK_ROWS = 1_000_000
EXCERPT_CHARS = 20  # of a bad file's content quoted in an error
_ZONE_SUFFIX = r"(?:[zZ]|UTC|GMT|[+-]\d\d(?::?\d\d)?)\s*$"  # a timestamp text with a zone


@dataclass(frozen=True)
class SeriesSchema:
    """The columns a detector was trained on."""

    timestamp_col: str | None
    columns: tuple[str, ...]


@dataclass
class SeriesChunk:
    """A validated piece of a series: `values` is (n_rows, n_columns) float32."""

    values: np.ndarray
    timestamps: np.ndarray | None  # datetime64[ns] or None when the series has no time column
    first_row: int  # index of the chunk's first row in the whole series


@dataclass
class SeriesBatch:
    """A whole series read and validated once: what scoring, profiles and plots all take."""

    values: np.ndarray  # (n_rows, n_columns) float32
    timestamps: np.ndarray | None  # datetime64[ns] or None when the series has no time column
    columns: tuple[str, ...]
    source: str = "<DataFrame>"
    content_sha256: str | None = None  # of the file read; None for a DataFrame

    @property
    def n_records(self) -> int:
        return len(self.values)


def is_timeseries_path(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(TIMESERIES_SUFFIXES)


def _parses_as_datetime(series: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(series):
        return True
    if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
        return False
    sample = series.dropna().head(20)
    if sample.empty:
        return False
    try:
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    except (TypeError, ValueError):
        return False
    return bool(parsed.notna().all())


def infer_schema(
    frame: pd.DataFrame,
    *,
    timestamp_col: str | None = None,
    columns: Sequence[str] | None = None,
    source: str = "<DataFrame>",
) -> SeriesSchema:
    """Pick the timestamp column and the numeric value columns of `frame`.

    Without `timestamp_col`, the first column that parses as datetimes is used (none is fine:
    rows are then indexed by position). Without `columns`, every other numeric column is used.
    """
    if timestamp_col is not None and timestamp_col not in frame.columns:
        raise SchemaError(
            f"timestamp column {timestamp_col!r} not found; columns are {list(frame.columns)}",
            source=source,
        )
    if timestamp_col is None:
        timestamp_col = next((str(c) for c in frame.columns if _parses_as_datetime(frame[c])), None)
    if columns is None:
        columns = [
            str(c)
            for c in frame.columns
            if c != timestamp_col
            and pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])
        ]
        if not columns:
            raise DataError(
                f"no numeric value column found; columns are {list(frame.columns)}{_delimiter_hint(frame)}",
                source=source,
            )
    else:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"value columns {missing} not found; columns are {list(frame.columns)}",
                source=source,
            )
    return SeriesSchema(timestamp_col=timestamp_col, columns=tuple(columns))


def _delimiter_hint(frame: pd.DataFrame) -> str:
    """What to do when a file's header came out as one column holding semicolons (a CSV
    written with ';' as its delimiter, as some locales do)."""
    if len(frame.columns) == 1 and ";" in str(frame.columns[0]):
        return "; the file seems to use ';' as its delimiter: aemon reads comma-separated files"
    return ""


def _describe_rows(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{shown}{more}"


def validate_chunk(
    frame: pd.DataFrame,
    schema: SeriesSchema,
    *,
    first_row: int = 0,
    previous_timestamp: np.datetime64 | None = None,
    fill: FillMethod | None = None,
    source: str = "<DataFrame>",
) -> SeriesChunk:
    """Check and convert one chunk of rows; row numbers in errors count from the series start
    (0-based, header excluded)."""
    missing = [c for c in schema.columns if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"value columns {missing} not found; the detector expects {list(schema.columns)}, "
            f"the input has {list(frame.columns)}{_delimiter_hint(frame)}",
            source=source,
        )
    timestamps = None
    if schema.timestamp_col is not None:
        if schema.timestamp_col not in frame.columns:
            raise SchemaError(
                f"timestamp column {schema.timestamp_col!r} not found; the input has "
                f"{list(frame.columns)}{_delimiter_hint(frame)}",
                source=source,
            )
        raw = frame[schema.timestamp_col]
        parsed = _parse_timestamps(raw)
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if bad.size:
            raise DataError(
                f"unparseable timestamp {raw.iloc[bad[0]]!r} in column {schema.timestamp_col!r} "
                f"(rows {_describe_rows(bad + first_row)})",
                source=source,
                record=int(bad[0] + first_row),
            )
        parsed = _one_time_zone_kind(parsed, raw, schema.timestamp_col, first_row, source)
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        timestamps = parsed.to_numpy(dtype="datetime64[ns]")
        check = timestamps if previous_timestamp is None else np.r_[previous_timestamp, timestamps]
        offset = first_row if previous_timestamp is None else first_row - 1
        steps = np.diff(check)
        zero = np.timedelta64(0, "ns")
        unsorted = np.flatnonzero(steps < zero)
        if unsorted.size:
            row = int(unsorted[0] + 1 + offset)
            raise DataError(
                f"timestamps are not sorted: {check[unsorted[0] + 1]} comes after "
                f"{check[unsorted[0]]} (rows {_describe_rows(unsorted + 1 + offset)}); sort the file",
                source=source,
                record=row,
            )
        dups = np.flatnonzero(steps == zero)
        if dups.size:
            raise DataError(
                f"duplicate timestamp {check[dups[0] + 1]} "
                f"(rows {_describe_rows(dups + 1 + offset)}); aggregate or drop duplicates",
                source=source,
                record=int(dups[0] + 1 + offset),
            )
    values = _numeric_values(frame, schema.columns, first_row, source)
    bad_mask = ~np.isfinite(values)
    if bad_mask.any():
        if fill is None:
            rows = np.flatnonzero(bad_mask.any(axis=1))
            cols = [schema.columns[i] for i in np.flatnonzero(bad_mask.any(axis=0))]
            raise DataError(
                f"{int(bad_mask.sum())} NaN/inf values in columns {cols} "
                f"(rows {_describe_rows(rows + first_row)}); "
                "clean the data, or train the detector with Detector(fill='ffill'|'interpolate'|"
                "'zero') so that it repairs such gaps (the CLI has no option for it)",
                source=source,
                record=int(rows[0] + first_row),
            )
        values = fill_missing(values, fill)
    with np.errstate(over="ignore"):  # beyond float32 becomes ±inf; Detector._standardize clips it
        values = values.astype(np.float32)
    return SeriesChunk(values=values, timestamps=timestamps, first_row=first_row)


def _numeric_values(frame: pd.DataFrame, columns: Sequence[str], first_row: int, source: str) -> np.ndarray:
    """The value columns as float64; a value that is not a number is an error naming its
    column and row (NaN/inf are numbers here: validate_chunk reports them itself)."""
    try:
        return frame.loc[:, list(columns)].to_numpy(dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        pass
    for column in columns:
        parsed = pd.to_numeric(frame[column], errors="coerce")
        bad = np.flatnonzero(parsed.isna().to_numpy() & frame[column].notna().to_numpy())
        if bad.size:
            raise DataError(
                f"value {frame[column].iloc[bad[0]]!r} in column {column!r} is not a number "
                f"(rows {_describe_rows(bad + first_row)})",
                source=source,
                record=int(bad[0] + first_row),
            )
    raise DataError(f"value columns {list(columns)} must be numeric", source=source)


def _one_time_zone_kind(
    parsed: pd.Series, raw: pd.Series, column: str, first_row: int, source: str
) -> pd.Series:
    """Parsed timestamps as one datetime64 column. pandas leaves an object column when the
    values do not share one time zone: offsets that differ (a DST change) are converted to UTC,
    while a mix of timestamps with and without a zone is an error naming the first row whose
    kind differs from the first row's (a naive time has no place on a UTC axis)."""
    if pd.api.types.is_datetime64_any_dtype(parsed):
        if getattr(parsed.dt, "tz", None) is None or not pd.api.types.is_string_dtype(raw):
            return parsed
        # pandas' ISO parser gives naive text the zone of the first value: check the text.
        aware = raw.astype(str).str.contains(_ZONE_SUFFIX, regex=True).to_numpy(dtype=bool)
        if aware.all():
            return parsed
    else:
        aware = np.array([getattr(t, "tzinfo", None) is not None for t in parsed])
        if aware.all():
            return pd.to_datetime(parsed, utc=True)
    odd = int(np.flatnonzero(aware != aware[0])[0])
    with_zone, without = (odd, 0) if aware[odd] else (0, odd)
    raise DataError(
        f"timestamps in column {column!r} mix values with and without a time zone: row "
        f"{with_zone + first_row} ({raw.iloc[with_zone]!r}) has one, row {without + first_row} "
        f"({raw.iloc[without]!r}) has none; write every timestamp with a zone or none",
        source=source,
        record=odd + first_row,
    )


def _parse_timestamps(raw: pd.Series) -> pd.Series:
    """Timestamps with pandas' rules; NaT where a value does not parse.

    ISO 8601 text (what most exports write) parses several times faster with the ISO parser;
    anything else, or any value that the ISO parser rejects, goes through `format="mixed"`.
    """
    # Mixed offsets (a DST change) or zoned and naive values: pandas warns that it will raise
    # one day; _one_time_zone_kind handles both cases itself, with a clear error for the second.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "In a future version of pandas, parsing datetimes", FutureWarning)
        if not pd.api.types.is_datetime64_any_dtype(raw):
            try:
                fast = pd.to_datetime(raw, errors="coerce", format="ISO8601", utc=False)
            except (TypeError, ValueError):
                fast = None
            if fast is not None and pd.api.types.is_datetime64_any_dtype(fast) and not fast.isna().any():
                return fast
        return pd.to_datetime(raw, errors="coerce", format="mixed", utc=False)


def fill_missing(values: np.ndarray, fill: FillMethod) -> np.ndarray:
    """Repair NaN/inf values: `ffill` carries the last valid value forward (the first rows take
    the first valid value), `interpolate` is linear in row position, `zero` writes 0."""
    if fill not in FILL_METHODS:
        raise ConfigError(f"fill must be one of {FILL_METHODS}, got {fill!r}")
    frame = pd.DataFrame(np.where(np.isfinite(values), values, np.nan))
    if fill == "zero":
        frame = frame.fillna(0.0)
    elif fill == "ffill":
        frame = frame.ffill().bfill()
    else:
        frame = frame.interpolate(limit_direction="both")
    if frame.isna().any().any():
        raise DataError(f"a column has no finite value at all; fill={fill!r} cannot repair it")
    return frame.to_numpy(dtype=np.float64)


def read_frame_chunks(
    path: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS, content_hash: ContentHash | None = None
) -> Iterator[pd.DataFrame]:
    """Yield a CSV or Parquet file as DataFrames of at most about `chunk_rows` rows.

    The file is opened once and hashed as it is read: once the last chunk is out,
    `content_hash.value` is the file's sha256.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    name = path.name.lower()
    if not name.endswith((".parquet", ".pq", ".csv", ".csv.gz")):
        raise DataError(
            f"unsupported time-series file type; expected one of {TIMESERIES_SUFFIXES}", source=path
        )
    try:
        with open_hashed(path) as fh:
            if name.endswith((".parquet", ".pq")):
                # Parquet is read from its footer backwards: from memory, after one read.
                with pq.ParquetFile(pa.BufferReader(fh.read())) as pf:
                    for batch in pf.iter_batches(batch_size=chunk_rows):
                        yield batch.to_pandas()
            else:
                # Timestamps stay strings here; validate_chunk parses them with pandas' rules.
                stream: pa.NativeFile = pa.PythonFile(fh, mode="r")
                if name.endswith(".gz"):
                    stream = pa.CompressedInputStream(stream, "gzip")
                block = max(1 << 20, min(chunk_rows * 32, 1 << 28))
                reader = pacsv.open_csv(
                    stream,
                    read_options=pacsv.ReadOptions(block_size=block),
                    convert_options=pacsv.ConvertOptions(timestamp_parsers=[], strings_can_be_null=True),
                )
                pending: pa.Table | None = None
                for batch in reader:
                    table = pa.Table.from_batches([batch])
                    pending = table if pending is None else pa.concat_tables([pending, table])
                    while pending.num_rows >= chunk_rows:
                        yield pending.slice(0, chunk_rows).to_pandas()
                        pending = pending.slice(chunk_rows)
                if pending is not None and pending.num_rows:
                    yield pending.to_pandas()
            if content_hash is not None:
                content_hash.value = fh.hexdigest()
    except UnicodeDecodeError as exc:  # a column name (or Parquet metadata) that is not UTF-8
        raise DataError(
            f"not UTF-8 text (byte {exc.object[exc.start]:#04x}); save the file as UTF-8",
            source=path,
        ) from exc
    except (OSError, ValueError, pa.ArrowException) as exc:  # ValueError: Parquet's pandas metadata
        raise DataError(f"cannot read file: {_arrow_reason(exc)}", source=path) from exc


def _arrow_reason(exc: Exception) -> str:
    """pyarrow's message with the file content it quotes (a whole CSV line) cut to a short
    excerpt: a file that is not what it claims (a link to /etc/passwd) must not end up in the
    batch ledger or on the terminal."""
    text = " ".join(str(exc).split())
    found = re.match(r"(.*?\bgot \d+): (.*)$", text)
    if found:
        head, line = found.groups()
        more = "\u2026" if len(line) > EXCERPT_CHARS else ""
        return f"{head}: line starts {line[:EXCERPT_CHARS]!r}{more}"  # repr escapes control chars
    return safe_text(text, 200)


def iter_series(
    data: str | Path | pd.DataFrame,
    schema: SeriesSchema | None = None,
    *,
    timestamp_col: str | None = None,
    columns: Sequence[str] | None = None,
    fill: FillMethod | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    content_hash: ContentHash | None = None,
) -> tuple[SeriesSchema, Iterator[SeriesChunk]]:
    """Open a series and return its schema and an iterator of validated chunks.

    With `schema` (a trained detector's), the input must contain those columns; otherwise the
    schema is inferred from the first chunk. A file's sha256 is left in `content_hash` once
    the last chunk is out.
    """
    if isinstance(data, pd.DataFrame):
        source = "<DataFrame>"
        frames: Iterator[pd.DataFrame] = (
            data.iloc[i : i + chunk_rows] for i in range(0, max(len(data), 1), chunk_rows)
        )
    else:
        path = Path(data)
        source = str(path)
        if not path.exists():
            raise DataError("file not found", source=path)
        if path.is_dir():
            raise DataError("a folder: a time-series batch is one CSV or Parquet file", source=path)
        frames = read_frame_chunks(path, chunk_rows, content_hash)
    first = next(frames, None)
    if first is None or len(first) == 0:
        raise DataError("the series has no rows", source=source)
    if schema is None:
        schema = infer_schema(first, timestamp_col=timestamp_col, columns=columns, source=source)

    def chunks() -> Iterator[SeriesChunk]:
        row = 0
        last: np.datetime64 | None = None
        frame: pd.DataFrame | None = first
        while frame is not None:
            chunk = validate_chunk(
                frame, schema, first_row=row, previous_timestamp=last, fill=fill, source=source
            )
            row += len(frame)
            if chunk.timestamps is not None and len(chunk.timestamps):
                last = chunk.timestamps[-1]
            yield chunk
            frame = next(frames, None)

    return schema, chunks()


def load_series(
    data: str | Path | pd.DataFrame,
    schema: SeriesSchema | None = None,
    **kwargs: object,
) -> tuple[SeriesSchema, SeriesBatch]:
    """Read a whole series into memory, once (a file's content hash comes with it)."""
    content_hash = ContentHash()
    schema, chunks = iter_series(data, schema, content_hash=content_hash, **kwargs)  # type: ignore[arg-type]
    parts = list(chunks)
    values = np.concatenate([p.values for p in parts]) if len(parts) > 1 else parts[0].values
    stamps = None
    if parts[0].timestamps is not None:
        stamps = np.concatenate([p.timestamps for p in parts if p.timestamps is not None])
    source = "<DataFrame>" if isinstance(data, pd.DataFrame) else str(data)
    return schema, SeriesBatch(values, stamps, schema.columns, source, content_hash.value)


def sliding_windows(values: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """(n_rows, n_columns) -> read-only view (n_windows, window, n_columns); no copy."""
    if values.shape[0] < window:
        raise DataError(f"the series has {values.shape[0]} rows, fewer than the window ({window})")
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (n, C, window)
    return view.transpose(0, 2, 1)[::stride]
