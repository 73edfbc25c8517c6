"""Data sets for ReDO: the published benchmarks, a user's folder and a synthetic default.

One entry point::

    from redo_lib.data import load_dataset
    train = load_dataset("flowers", "data/flowers", "train", image_size=128)
    item = train[0]  # {"image": (3, 128, 128) in [-1, 1], "mask": (1, 128, 128) 0/1, "index": 0}

``load_dataset("synthetic", None, "train", image_size=32)`` needs no download. Files for
``flowers``, ``lfw``, ``cub`` and ``cmnist`` (MNIST) come from
``redo data download NAME --root DIR`` (see :mod:`redo_lib.data.download`). Layouts,
splits and ground-truth rules follow the official code; each
loader's module documents its own.
"""
from .base import ImageMaskDataset, ProceduralDataset, Sample
from .cmnist import ColoredMNIST
from .cub import CUB
from .download import DownloadReport, download_dataset
from .errors import (
    ChecksumError,
    CorruptFileError,
    DataError,
    DatasetError,
    DownloadError,
    MissingDataError,
    UnknownNameError,
)
from .flowers import Flowers
from .folder import ImageFolder
from .lfw import LFW
from .registry import DATASETS, SYNTHETIC_NAMES, DatasetInfo, SplitReport, check_dataset, load_dataset
from .sources import EXPECTED_COUNTS, SOURCES
from .synthetic import SyntheticShapes

__all__ = [
    "load_dataset",
    "check_dataset",
    "download_dataset",
    "DATASETS",
    "SYNTHETIC_NAMES",
    "DatasetInfo",
    "SplitReport",
    "DownloadReport",
    "SOURCES",
    "EXPECTED_COUNTS",
    "ImageMaskDataset",
    "ProceduralDataset",
    "Sample",
    "Flowers",
    "LFW",
    "CUB",
    "ColoredMNIST",
    "ImageFolder",
    "SyntheticShapes",
    "DataError",
    "DatasetError",
    "MissingDataError",
    "CorruptFileError",
    "UnknownNameError",
    "DownloadError",
    "ChecksumError",
]
