"""Labeled Faces in the Wild, funneled, with the part labels of Kae et al..

Layout of ``root`` (what ``redo data download lfw`` produces)::

    root/lfw_funneled/<person>/<person>_<nnnn>.jpg       # 250 x 250 images
    root/parts_lfw_funneled_gt_images/<name>.ppm         # part labels (R hair, G face, B background)
    root/train.txt  root/val.txt  root/test.txt          # "<person> <name>" per line (official ReDO splits)

The official splits hold 10,296 / 1,327 / 1,600 images; only ``val`` and ``test`` have
part labels (they are exactly the 2,927 labelled images), so ``train`` items carry no
``"mask"`` key at all: no placeholder that an evaluation could score by mistake.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from .base import ImageMaskDataset, Sample, read_table
from .transforms import open_image

__all__ = ["LFW", "lfw_foreground", "MASKED_SPLITS"]

#: splits that come with ground truth
MASKED_SPLITS = ("val", "test")
IMAGES_DIR = "lfw_funneled"
PARTS_DIR = "parts_lfw_funneled_gt_images"


def lfw_foreground(parts: np.ndarray) -> np.ndarray:
    """Boolean foreground (face and hair) of an LFW part-label image (H, W, 3) uint8.

    Channel 2 (blue) marks the background; the official code takes ``1 - blue / 255``.
    The labels are pure colours, so we binarise that value at 0.5: foreground where the
    blue channel is below 128.
    """
    if parts.ndim != 3 or parts.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) array, got shape {parts.shape}")
    return parts[..., 2] < 128


class LFW(ImageMaskDataset):
    """LFW funneled (K = 2); ``val`` and ``test`` have masks, ``train`` has none."""

    name = "lfw"
    download_name = "lfw"

    def required_paths(self) -> List[str]:
        required = [IMAGES_DIR, f"{self.split}.txt"]
        if self.split in MASKED_SPLITS:
            required.append(PARTS_DIR)
        return required

    def list_samples(self) -> List[Sample]:
        rows = read_table(self.root / f"{self.split}.txt", 2, self.name)
        with_masks = self.split in MASKED_SPLITS
        return [
            Sample(
                self.root / IMAGES_DIR / person / f"{name}.jpg",
                self.root / PARTS_DIR / f"{name}.ppm" if with_masks else None,
            )
            for person, name in rows
        ]

    def read_mask(self, path: Path) -> np.ndarray:
        return lfw_foreground(np.asarray(open_image(path, "part label").convert("RGB")))
