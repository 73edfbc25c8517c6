"""Caltech-UCSD Birds 200-2011 with its segmentations.

Layout of ``root`` (what ``redo data download cub`` produces; the official README calls
it the ``CUB_200_2011/CUB_200_2011`` sub-folder)::

    root/images.txt                       # "<id> <class>/<name>.jpg"
    root/images/<class>/<name>.jpg        # 11,788 images, a few of them grayscale
    root/segmentations/<class>/<name>.png # soft masks, 0..255
    root/train_val_test_split.txt         # "<id> <0|1|2>" from the ReDO repository

Splits: code 0 = ``train`` (10,000), 1 = ``val`` (788), 2 = ``test`` (1,000).
"""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import List, Mapping

import numpy as np

from .base import ImageMaskDataset, Sample, read_table
from .errors import DatasetError
from .transforms import first_channel_unit, open_image

__all__ = ["CUB", "cub_foreground", "SPLIT_CODES"]

SPLIT_CODES: Mapping[str, str] = MappingProxyType({"train": "0", "val": "1", "test": "2"})


def cub_foreground(values: np.ndarray) -> np.ndarray:
    """Boolean foreground of a CUB segmentation given in ``[0, 1]``: ``value > 0.5``.

    The official code thresholds ``ToTensor()`` of the PNG (its first channel) at 0.5,
    i.e. 8-bit pixels of 128 and above are foreground.
    """
    return values > 0.5


class CUB(ImageMaskDataset):
    """CUB-200-2011 (K = 2); every split has ground truth."""

    name = "cub"
    download_name = "cub"

    def required_paths(self) -> List[str]:
        return ["images.txt", "train_val_test_split.txt", "images", "segmentations"]

    def list_samples(self) -> List[Sample]:
        images = read_table(self.root / "images.txt", 2, self.name)
        codes = dict(read_table(self.root / "train_val_test_split.txt", 2, self.name))
        ids = [image_id for image_id, _ in images]
        if set(ids) != set(codes):
            raise DatasetError(
                f"cub: {self.root / 'images.txt'} and {self.root / 'train_val_test_split.txt'} "
                f"list different image ids ({len(ids)} vs {len(codes)}): the split file must come "
                "from the ReDO repository (datasplits/cub/train_val_test_split.txt)"
            )
        code = SPLIT_CODES[self.split]
        samples = []
        for image_id, relative in images:
            if codes[image_id] != code:
                continue
            samples.append(
                Sample(
                    self.root / "images" / relative,
                    self.root / "segmentations" / (str(Path(relative).with_suffix("")) + ".png"),
                )
            )
        return samples

    def read_mask(self, path: Path) -> np.ndarray:
        return cub_foreground(first_channel_unit(open_image(path, "segmentation")))
