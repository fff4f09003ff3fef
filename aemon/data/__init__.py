"""Reading and validating input data: time series (`timeseries`) and images (`images`)."""

from aemon.data.images import ImageBatch, ImageSchema, load_images
from aemon.data.timeseries import SeriesChunk, SeriesSchema, iter_series, load_series

__all__ = [
    "ImageBatch",
    "ImageSchema",
    "SeriesChunk",
    "SeriesSchema",
    "iter_series",
    "load_images",
    "load_series",
]
