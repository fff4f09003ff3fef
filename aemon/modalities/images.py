"""Images: a record is an image (channels, height, width) in [0, 1]; its score is the mean
error of its worst pixels, and each scored image keeps its per-pixel error map."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from aemon.data.images import ImageBatch, ImageSchema, decode_images, is_image_source, load_images
from aemon.errors import DataError
from aemon.modalities.base import Modality, as_labels, fingerprint
from aemon.results import LatentSample, ScoreResult, sample_rows

if TYPE_CHECKING:
    from aemon.detector import Detector, Input
    from aemon.training import TrainConfig


class ImageModality(Modality):
    name = "image"
    batch_type = ImageBatch
    default_arch = "conv"
    # A small conv learns a few hundred images as well with shorter epochs and a larger step
    # (MNIST one-class AUROC unchanged, a sixth of the training time).
    learning_rate = 2e-3
    samples_per_epoch = 2048
    ordered = False
    has_events = False
    drift_test = "auto"

    def accepts(self, data: Input) -> bool:
        if isinstance(data, pd.DataFrame):
            return False
        if isinstance(data, np.ndarray):
            return data.ndim >= 3
        return is_image_source(Path(data))

    def fit(self, det: Detector, data: Input, labels: Any, cfg: TrainConfig) -> None:
        # torch loads on first use, not on import: light commands and the ui stay fast.
        from aemon.scoring import score_images
        from aemon.training import train_autoencoder

        want = None
        if det.image_size is not None:
            _, probe = _load(data, None)  # channels from the data, size from the argument
            want = ImageSchema(int(det.image_size[0]), int(det.image_size[1]), probe.images.shape[1])
        schema, batch = _load(data, want)
        n = len(batch.images)
        y = as_labels(labels, n, "images")
        rng = np.random.default_rng(det.seed)
        normal = np.flatnonzero(~y) if y is not None else np.arange(n)
        normal = rng.permutation(normal)
        n_cal = max(1, int(len(normal) * det.calibration_fraction))
        n_val = int(len(normal) * det.validation_fraction)
        if len(normal) - n_cal - n_val < 2:
            raise DataError(f"{n} images are too few to train, validate and calibrate")
        cal_idx = np.sort(np.r_[normal[:n_cal], np.flatnonzero(y) if y is not None else []]).astype(int)
        val_idx = np.sort(normal[n_cal : n_cal + n_val])
        train_idx = np.sort(normal[n_cal + n_val :])
        det.schema_ = schema
        det.offset_, det.scale_ = np.zeros(1), np.ones(1)
        output = "sigmoid"  # pixels live in [0, 1]
        shape = (schema.channels, schema.height, schema.width)
        det.model_ = det._build(self, shape, output)
        images = batch.images
        det.training_ = train_autoencoder(
            det.model_,
            images[train_idx],
            images[val_idx],
            cfg,
            device=det.device_,
            seed=det.seed,
            progress=det.progress,
        )
        cal_scores, _, _ = score_images(
            det.model_, images[cal_idx], det.loss, det.device_, det.worst_pixels, keep_maps=False
        )
        det.series_scoring_ = None
        det.calendar_ = ()
        det._set_threshold(cal_scores, y[cal_idx] if y is not None else None, None)
        det.fingerprint_ = fingerprint(images)
        det.n_train_records_ = len(train_idx)

    def read_reference(self, path: Path) -> tuple[pd.DataFrame | np.ndarray, list[str] | None]:
        _, batch = load_images(path)
        return batch.images.transpose(0, 2, 3, 1), batch.keys

    def read(self, det: Detector, data: Input) -> ImageBatch:
        return _load(data, det.schema_)[1]

    def score(self, det: Detector, batch: Any, latent_sample: int, seed: int) -> ScoreResult:
        from aemon.scoring import score_images

        rows = sample_rows(len(batch.images), latent_sample, seed)
        scores, maps, codes = score_images(
            det.model_, batch.images, det.loss, det.device_, det.worst_pixels, sample=rows
        )
        return ScoreResult(
            image_keys=batch.keys,
            scores=scores,
            is_anomaly=scores > det.threshold_,
            calibration_scores=det.calibration_scores_,
            threshold=det.threshold_,
            error_maps=maps,
            batch=batch,
            latents=LatentSample(rows, codes),
        )

    def latent_sample(self, det: Detector, batch: Any, size: int, seed: int) -> LatentSample:
        from aemon.scoring import encode

        rows = sample_rows(batch.n_records, size, seed)
        return LatentSample(rows, encode(det.model_, batch.images[rows], det.device_))

    def model_inputs(self, det: Detector, batch: Any) -> np.ndarray:
        return np.asarray(batch.images)

    def calibration_sample(
        self, det: Detector, batch: Any, limit: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = sample_rows(batch.n_records, limit, seed)
        return rows, batch.images[rows]

    def drift_slices(self, det: Detector) -> dict[str, Any]:
        return {"contiguous": False, "window": 1, "stride": 1}

    def profile_inputs(self, batch: Any, rows: np.ndarray) -> pd.DataFrame:
        return image_statistics(batch.images[rows])

    def plot_batch(self, result: ScoreResult, out: Path, max_images: int) -> None:
        from aemon.drift.plots import draw_images

        draw_images(result, cast(ImageBatch, result.batch), out, max_images)

    def holdout_figures(
        self, det: Detector, reference: Input, res: ScoreResult, labels: Any
    ) -> dict[str, Any]:
        from aemon.registry.plots import plot_images

        return {"holdout_images": plot_images(det, reference, res)}

    def serve(self, det: Detector, frame: pd.DataFrame) -> pd.DataFrame:
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
        nchw = decode_images(items, det.schema_)
        out = det.score(nchw.transpose(0, 2, 3, 1)).to_frame()
        out["key"] = keys
        return out

    def example_frame(self, det: Detector, reference: Input | None) -> pd.DataFrame:
        schema = det.schema_
        if reference is not None:
            images = _load(reference, schema)[1].images[:2]
        else:  # made up: a grey image
            images = np.full((1, schema.channels, schema.height, schema.width), 0.5, np.float32)
        return pd.DataFrame({"image": [_png_bytes(im) for im in images]})

    def input_columns(self, example: pd.DataFrame) -> list[tuple[str, str, bool]]:
        # Either column: file paths, or encoded PNG/JPEG bytes.
        return [("string", "path", False), ("binary", "image", False)]

    def block_size(self, window: int) -> int:
        return 1  # images are scored independently

    def schema_to_dict(self, schema: Any) -> dict[str, Any]:
        return {"height": schema.height, "width": schema.width, "channels": schema.channels}

    def schema_from_dict(self, saved: dict[str, Any]) -> ImageSchema:
        return ImageSchema(saved["height"], saved["width"], saved["channels"])


IMAGE_STATS = ("brightness_mean", "brightness_std", "edge_energy", "brightness_p99")


def image_statistics(images: np.ndarray) -> pd.DataFrame:
    """Per-image summary statistics of (N, C, H, W) images in [0, 1], channels averaged: the
    input columns of an image drift profile (IMAGE_STATS).

    `edge_energy` is the mean squared gradient magnitude: it moves with blur, sharpness and
    texture, which brightness statistics miss.
    """
    gray = images.astype(np.float64).mean(axis=1)
    gy, gx = np.gradient(gray, axis=(1, 2))
    return pd.DataFrame(
        {
            "brightness_mean": gray.mean(axis=(1, 2)),
            "brightness_std": gray.std(axis=(1, 2)),
            "edge_energy": (gx**2 + gy**2).mean(axis=(1, 2)),
            "brightness_p99": np.percentile(gray.reshape(len(gray), -1), 99, axis=1),
        }
    )


def _load(data: Input, schema: ImageSchema | None) -> tuple[ImageSchema, ImageBatch]:
    if isinstance(data, pd.DataFrame):
        raise DataError("images are given as a folder, .npy/.npz, IDX .gz file or array, not a DataFrame")
    return load_images(data, schema)


def _png_bytes(image: np.ndarray) -> bytes:
    """(C, H, W) float in [0, 1] -> PNG bytes."""
    import io

    from PIL import Image

    arr = np.clip(np.round(image * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format="PNG")
    return buf.getvalue()
