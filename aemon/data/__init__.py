"""Reading and validating input data: time series (`timeseries`) and images (`images`).

A batch is read once: `load_series` and `load_images` return a `SeriesBatch` or `ImageBatch`
that carries the records and the content hash of the file(s) read (`source`).
"""

from aemon.data.images import ImageBatch, ImageSchema, load_images
from aemon.data.timeseries import SeriesBatch, SeriesChunk, SeriesSchema, iter_series, load_series

Batch = SeriesBatch | ImageBatch

__all__ = [
    "Batch",
    "ImageBatch",
    "ImageSchema",
    "SeriesBatch",
    "SeriesChunk",
    "SeriesSchema",
    "iter_series",
    "load_images",
    "load_series",
]
