"""The detector as an MLflow pyfunc model: what a registered version serves.

`AemonModel.predict(DataFrame)` returns one row per input record with `score`, `is_anomaly`
and `p_value`; `input_example` and `model_signature` describe that input and output for MLflow.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from aemon.detector import Detector, Input
from aemon.modalities.base import ANY_NUMBER, column_type

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
    return detector.adapter_.serve(detector, frame)


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


def input_example(detector: Detector, reference_data: Input | None = None) -> pd.DataFrame:
    """A small valid pyfunc input: the first rows / images of the reference data, or made up
    from the schema (a flat series at the training mean, a grey image) without one."""
    return detector.adapter_.example_frame(detector, reference_data)


def model_signature(detector: Detector, example: pd.DataFrame, output: pd.DataFrame) -> ModelSignature:
    """Declared, not inferred: inference warns about integer columns and cannot express
    "a `path` or an `image` column" for images. A series' value columns take any type: MLflow
    turns away int64 where double is declared (a CSV of counts), and the detector checks
    that they are numbers, naming the column and row."""
    columns = detector.adapter_.input_columns(example)
    inputs = Schema(
        [
            ColSpec(AnyType() if kind == ANY_NUMBER else kind, name, required=required)
            for kind, name, required in columns
        ]
    )
    outputs = Schema([ColSpec(column_type(output[c]), str(c)) for c in output.columns])
    return ModelSignature(inputs=inputs, outputs=outputs)
