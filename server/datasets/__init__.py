"""Datasets: DataSpec -> Dataset (train/validation tensors, preprocessed), plus augmentation and uploads.

One file per family: synthetic2d.py (2D points), images.py (digits, MNIST, photo
patches), generated.py (shapes, gratings), uploads.py (CSV/NPZ). catalog.py holds
DATASETS, the only table of names, and load_dataset.
"""

from .augment import Augmenter
from .base import DataError, Dataset
from .catalog import DATASETS, DatasetInfo, DataShape, describe_data, load_dataset
from .preview import preview
from .uploads import UPLOAD_PREFIX, UploadedData, load_upload, parse_upload, save_upload

__all__ = [
    "DATASETS",
    "UPLOAD_PREFIX",
    "Augmenter",
    "DataError",
    "DataShape",
    "Dataset",
    "DatasetInfo",
    "UploadedData",
    "describe_data",
    "load_dataset",
    "load_upload",
    "parse_upload",
    "preview",
    "save_upload",
]
