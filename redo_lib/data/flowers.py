"""Oxford 102 Flowers with the segmentations of Nilsback & Zisserman.

Layout of ``root`` (what ``redo data download flowers`` produces)::

    root/setid.mat                      # trnid / valid / tstid, 1-based image ids
    root/jpg/image_00001.jpg ...        # 8,189 images
    root/segmim/segmim_00001.jpg ...    # segmentations: background painted pure blue

Splits, as in the official code: ``train`` = the 6,149 ids of ``tstid`` (the data set's
own *test* list, the largest), ``val`` = ``valid`` (1,020), ``test`` = ``trnid`` (1,020).
"""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Dict, List, Mapping

import numpy as np

from .base import ImageMaskDataset, PathLike, Sample
from .errors import CorruptFileError, DatasetError
from .transforms import open_image

__all__ = ["Flowers", "flowers_foreground", "read_setid", "MASK_RULES"]

#: split name -> key of setid.mat (official ReDO mapping)
SPLIT_KEYS: Mapping[str, str] = MappingProxyType({"train": "tstid", "val": "valid", "test": "trnid"})
MASK_RULES = ("official", "blue")


def read_setid(path: Path) -> Dict[str, np.ndarray]:
    """The three 1-based id lists of ``setid.mat`` as flat int64 arrays."""
    from scipy import io as scipy_io

    try:
        content = scipy_io.loadmat(str(path))
    except FileNotFoundError:
        raise
    except Exception as error:  # scipy raises ValueError, TypeError, MatReadError...
        raise CorruptFileError(f"cannot read {path}: not a valid MATLAB file ({error})") from error
    out = {}
    for key in SPLIT_KEYS.values():
        if key not in content:
            raise DatasetError(f"{path} has no {key!r} entry (expected trnid, valid and tstid)")
        out[key] = np.asarray(content[key]).astype(np.int64).reshape(-1)
    return out


def flowers_foreground(segmim: np.ndarray, rule: str = "official") -> np.ndarray:
    """Boolean foreground of a Flowers segmentation image (H, W, 3) uint8.

    The segmentation images paint the background pure blue, ``(0, 0, 254)``, and keep the
    flower's own colours; they are JPEGs, so colours near the boundary are slightly off.

    * ``"official"`` (default): background where ``R == 0 or G == 0 or B == 254``, the
      test of the official code, which produced the published numbers. Because it only
      needs one channel to match, it also absorbs the JPEG ringing around the blue (e.g.
      ``(3, 0, 250)``); the price is that a rare flower pixel with a zero red or green
      channel counts as background. Parity with the paper wins, so this is the default.
    * ``"blue"``: background where the colour is close to the pure blue in every
      channel, ``R < 40 and G < 40 and B > 214``: stricter about what is blue, for
      sensitivity checks (not the published protocol).
    """
    if segmim.ndim != 3 or segmim.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) array, got shape {segmim.shape}")
    r, g, b = segmim[..., 0], segmim[..., 1], segmim[..., 2]
    if rule == "official":
        background = (r == 0) | (g == 0) | (b == 254)
    elif rule == "blue":
        background = (r < 40) & (g < 40) & (b > 214)
    else:
        raise ValueError(f"unknown Flowers mask rule {rule!r}; valid rules: {', '.join(MASK_RULES)}")
    return ~background


class Flowers(ImageMaskDataset):
    """Oxford 102 Flowers (K = 2); every split has ground truth.

    Args:
        root: the folder holding ``setid.mat``, ``jpg/`` and ``segmim/``.
        split: ``"train"``, ``"val"`` or ``"test"`` (official mapping, see module doc).
        image_size: S of the official resize-and-crop.
        mask_rule: ``"official"`` or ``"blue"`` (see :func:`flowers_foreground`).
    """

    name = "flowers"
    download_name = "flowers"

    def __init__(self, root: PathLike, split: str, image_size: int = 128, mask_rule: str = "official") -> None:
        if mask_rule not in MASK_RULES:
            raise ValueError(f"unknown Flowers mask rule {mask_rule!r}; valid rules: {', '.join(MASK_RULES)}")
        self.mask_rule = mask_rule
        super().__init__(root, split, image_size)

    def required_paths(self) -> List[str]:
        return ["setid.mat", "jpg", "segmim"]

    def list_samples(self) -> List[Sample]:
        ids = read_setid(self.root / "setid.mat")[SPLIT_KEYS[self.split]]
        return [
            Sample(self.root / "jpg" / f"image_{i:05d}.jpg", self.root / "segmim" / f"segmim_{i:05d}.jpg")
            for i in ids.tolist()
        ]

    def read_mask(self, path: Path) -> np.ndarray:
        segmim = np.asarray(open_image(path, "segmentation").convert("RGB"))
        return flowers_foreground(segmim, self.mask_rule)
