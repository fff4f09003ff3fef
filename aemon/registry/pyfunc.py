"""The detector as an MLflow pyfunc model: what a registered version serves.

`AemonModel.predict(DataFrame)` returns one row per input record with `score`, `is_anomaly`
and `p_value`; `input_example` and `model_signature` describe that input and output for MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from aemon.data.images import decode_images, load_images
from aemon.data.timeseries import read_frame_chunks
from aemon.detector import Detector, Input
from aemon.errors import DataError

MODEL_ARTIFACT = "model"  # the pyfunc model's name inside the run
DETECTOR_ARTIFACT = "detector"  # the detector folder inside the pyfunc model's artifacts
# MLflow "models from code": the model is this import, not a pickle (which MLflow warns about
# and which would tie a version to one cloudpickle). Loading it needs aemon installed.
MODEL_CODE = '''"""aemon pyfunc model: `AemonModel` loads the detector folder in artifacts/."""
import mlflow

from aemon.registry import AemonModel

mlflow.models.set_model(AemonModel())
'''


class AemonModel(PythonModel):
    """The detector as an MLflow pyfunc: `predict(DataFrame)` -> one row per input record.

    Time series: the columns of the training file (timestamp + value columns); output `key`,
    `timestamp`, `score`, `is_anomaly`, `p_value`, `event_id` (-1: no event). Images: a column
    `path` (file paths) or `image` (encoded PNG/JPEG bytes); output `key`, `score`,
    `is_anomaly`, `p_value`. Higher score = more anomalous; flagged when score > threshold.
    `model_config={"device": "cpu"}` at load time picks the device (default "auto").
    """

    def load_context(self, context: Any) -> None:
        config = getattr(context, "model_config", None) or {}
        self.detector = Detector.load(
            context.artifacts[DETECTOR_ARTIFACT], device=str(config.get("device", "auto"))
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return predict_frame(self.detector, model_input)


def predict_frame(detector: Detector, frame: pd.DataFrame) -> pd.DataFrame:
    """What the pyfunc model returns for `frame` (see `AemonModel`)."""
    if detector.modality_ == "timeseries":
        return detector.score(frame.reset_index(drop=True)).to_frame()
    if "image" in frame.columns and frame["image"].notna().all():
        items: list[Any] = [bytes(b) for b in frame["image"]]
        keys = [f"index:{i}" for i in range(len(items))]
    elif "path" in frame.columns and frame["path"].notna().all():
        items = keys = [str(p) for p in frame["path"]]
    else:
        raise DataError(
            "an image model takes a column 'path' (image file paths) or 'image' (encoded "
            f"PNG/JPEG bytes); got columns {list(frame.columns)}"
        )
    nchw = decode_images(items, detector.schema_)
    res = detector.score(nchw.transpose(0, 2, 3, 1))
    out = res.to_frame()
    out["key"] = keys
    return out


def pip_requirements() -> list[str]:
    """Explicit requirements: MLflow's inference would import-trace the model (seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("aemon", "mlflow", "torch", "numpy", "pandas", "scipy", "pillow", "pyarrow"):
        try:
            reqs.append(f"{pkg}=={version(pkg).split('+')[0]}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def series_frame(detector: Detector, data: Input, n_rows: int | None = None) -> pd.DataFrame:
    """The schema's columns of a series input, timestamps parsed (tz-naive UTC)."""
    if isinstance(data, pd.DataFrame):
        frame = data
    elif isinstance(data, np.ndarray):
        frame = pd.DataFrame(data, columns=list(detector.schema_.columns))
    else:
        chunks = read_frame_chunks(Path(data), n_rows or 1_000_000)
        frame = next(chunks) if n_rows else pd.concat(list(chunks), ignore_index=True)
    frame = frame.head(n_rows) if n_rows else frame
    out = pd.DataFrame(index=range(len(frame)))
    ts = detector.schema_.timestamp_col
    if ts is not None:
        stamps = pd.to_datetime(frame[ts].to_numpy(), format="mixed")
        if stamps.tz is not None:
            stamps = stamps.tz_convert("UTC").tz_localize(None)
        out[ts] = stamps
    for col in detector.schema_.columns:
        out[col] = frame[col].to_numpy(dtype=np.float64)
    return out


def _png_bytes(image: np.ndarray) -> bytes:
    """(C, H, W) float in [0, 1] -> PNG bytes."""
    import io

    from PIL import Image

    arr = np.clip(np.round(image * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()


def input_example(detector: Detector, reference_data: Input | None = None) -> pd.DataFrame:
    """A small valid pyfunc input: the first rows / images of the reference data, or made up
    from the schema (a flat series at the training mean, a grey image) without one."""
    if detector.modality_ == "timeseries":
        n_rows = detector.window + 8
        if reference_data is not None:
            return series_frame(detector, reference_data, n_rows)
        schema = detector.schema_
        frame = pd.DataFrame(index=range(n_rows))
        if schema.timestamp_col is not None:
            frame[schema.timestamp_col] = pd.date_range("2026-01-01", periods=n_rows, freq="min")
        for col, mean in zip(schema.columns, detector.offset_, strict=True):
            frame[col] = float(mean)
        return frame
    schema = detector.schema_
    if reference_data is not None:
        images = load_images(reference_data, schema)[1].images[:2]  # type: ignore[arg-type]
    else:
        images = np.full((1, schema.channels, schema.height, schema.width), 0.5, np.float32)
    return pd.DataFrame({"image": [_png_bytes(im) for im in images]})


def _col_type(series: pd.Series) -> str:
    kind = series.dtype.kind
    return {"b": "boolean", "i": "long", "u": "long", "f": "double", "M": "datetime"}.get(
        kind, "binary" if len(series) and isinstance(series.iloc[0], bytes) else "string"
    )


def model_signature(detector: Detector, example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """Declared, not inferred: inference warns about integer columns and cannot express
    "a `path` or an `image` column" for images."""
    if detector.modality_ == "timeseries":
        inputs = Schema([ColSpec(_col_type(example[c]), str(c)) for c in example.columns])
    else:
        inputs = Schema(
            [ColSpec("string", "path", required=False), ColSpec("binary", "image", required=False)]
        )
    outputs = Schema([ColSpec(_col_type(output[c]), str(c)) for c in output.columns])
    return ModelSignature(inputs=inputs, outputs=outputs)
