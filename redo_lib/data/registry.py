"""The catalogue of data sets and the single entry point :func:`load_dataset`."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, List, Mapping, Optional, Tuple

from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .cmnist import ColoredMNIST
from .cub import CUB
from .errors import DataError, UnknownNameError
from .flowers import Flowers
from .folder import ImageFolder
from .lfw import LFW
from .sources import EXPECTED_COUNTS
from .synthetic import LEVELS, OBJECT_KINDS, SyntheticShapes, dataset_name

__all__ = ["DatasetInfo", "DATASETS", "SYNTHETIC_NAMES", "load_dataset", "check_dataset", "SplitReport"]


@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`load_dataset` knows about one data set.

    Attributes:
        name: the name given to :func:`load_dataset`.
        factory: the class, called as ``factory(root, split, image_size, **kwargs)``.
        splits: valid split names.
        n_regions: K the data set is meant for (synthetic: 2 by default, 3 with
            ``n_regions=3``).
        download: name for ``redo data download`` (``None``: nothing to download).
        needs_root: whether ``root`` must point to files on disk.
        description: one line for listings.
    """

    name: str
    factory: Callable[..., Dataset]
    splits: Tuple[str, ...]
    n_regions: int
    download: Optional[str]
    needs_root: bool
    description: str


DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "flowers": DatasetInfo("flowers", Flowers, Flowers.splits, 2, "flowers", True,
                               "Oxford 102 Flowers with segmentations"),
        "lfw": DatasetInfo("lfw", LFW, LFW.splits, 2, "lfw", True,
                           "LFW funneled with part labels; train has no masks"),
        "cub": DatasetInfo("cub", CUB, CUB.splits, 2, "cub", True,
                           "CUB-200-2011 birds with segmentations"),
        "cmnist": DatasetInfo("cmnist", ColoredMNIST, ColoredMNIST.splits, 3, "mnist", True,
                              "Colored-2-MNIST built from MNIST files (K = 3)"),
        "folder": DatasetInfo("folder", ImageFolder, ImageFolder.splits, 2, None, True,
                              "your own root/images (+ optional masks, splits)"),
        "synthetic": DatasetInfo("synthetic", SyntheticShapes, SyntheticShapes.splits, 2, None, False,
                                 "procedural textured shapes, no download, CPU-friendly"),
        **{
            dataset_name(level, objects): DatasetInfo(
                dataset_name(level, objects), functools.partial(SyntheticShapes, level=level, objects=objects),
                SyntheticShapes.splits, 2, None, False,
                f"procedural {'digits' if objects == 'digits' else 'shapes'}, {level} level of the ladder"
                + (", no download" if level != "textured" else ""),
            )
            for objects in OBJECT_KINDS for level in LEVELS
            if dataset_name(level, objects) != "synthetic"
        },
    }
)

#: the names of the procedural (synthetic) data sets: no files, K chosen freely
SYNTHETIC_NAMES: Tuple[str, ...] = tuple(n for n, i in DATASETS.items() if i.download is None and not i.needs_root)


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown data set {name!r}; valid data sets: {', '.join(DATASETS)}") from None


def load_dataset(
    name: str,
    root: "str | os.PathLike[str] | None",
    split: str,
    image_size: int = 128,
    **kwargs: Any,
) -> Dataset:
    """Build data set ``name``'s ``split`` from ``root``.

    Args:
        name: one of :data:`DATASETS` (``flowers``, ``lfw``, ``cub``, ``cmnist``,
            ``folder``, ``synthetic``).
        root: the data set's folder (ignored by ``synthetic``, may be ``None`` there).
        split: ``train``, ``val`` or ``test`` (``folder`` also accepts ``all``).
        image_size: side S of the square images (official preprocessing).
        **kwargs: data-set options: ``mask_rule`` (flowers); ``seed``, ``length``
            (cmnist, synthetic); ``n_regions`` (synthetic, folder).

    Returns:
        A ``torch.utils.data.Dataset`` of dicts with ``"image"`` (3, S, S) in [-1, 1],
        ``"mask"`` where ground truth exists, and ``"index"``; it has the attributes
        ``n_regions`` and ``has_masks``.

    Raises:
        UnknownNameError: unknown name or split (the message lists the valid ones).
        MissingDataError: files are missing (the message gives the download command).
        DatasetError: other problems with the files on disk.
    """
    info = _info(name)
    if split not in info.splits:
        raise UnknownNameError(f"unknown split {split!r} for data set {name!r}; valid splits: {', '.join(info.splits)}")
    if info.needs_root and root is None:
        hint = f" (get it with: redo data download {info.download} --root DIR)" if info.download else ""
        raise ValueError(f"data set {name!r} needs a root folder{hint}")
    return info.factory(root, split, image_size=image_size, **kwargs)


@dataclass
class SplitReport:
    """One line of ``redo data check``: the split's size against the published one."""

    split: str
    count: Optional[int] = None
    expected: Optional[int] = None
    has_masks: Optional[bool] = None
    error: Optional[str] = None

    @property
    def matches(self) -> bool:
        return self.error is None and (self.expected is None or self.count == self.expected)


def check_dataset(
    name: str,
    root: "str | os.PathLike[str] | None",
    decode: bool = False,
    image_size: int = 32,
    progress: bool = True,
    **kwargs: Any,
) -> List[SplitReport]:
    """Build every split of ``name`` (which checks that all listed files exist) and count it.

    With ``decode=True`` every item is also read (finds corrupt images and image/mask
    size mismatches; slow on the full data sets). Errors are reported per split.
    """
    info = _info("cmnist" if name == "mnist" else name)
    splits = [s for s in info.splits if s != "all"]
    expected = EXPECTED_COUNTS.get(info.name, {})
    reports = []
    for split in splits:
        report = SplitReport(split, expected=expected.get(split))
        try:
            dataset = load_dataset(info.name, root, split, image_size=image_size, **kwargs)
            report.count = len(dataset)
            report.has_masks = bool(getattr(dataset, "has_masks", False))
            if decode:
                for index in tqdm(range(len(dataset)), desc=f"{info.name} {split}", disable=not progress, leave=False):
                    dataset[index]
        except DataError as error:
            report.error = str(error)
        reports.append(report)
    return reports
