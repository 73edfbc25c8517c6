"""Your own images, optionally with masks: the ``folder`` data set.

Layout::

    root/images/<stem>.png | .jpg | .jpeg     # any size, any mode (converted to RGB)
    root/masks/<stem>.png                     # optional: foreground where the pixel > 127
    root/splits/train.txt  val.txt  test.txt  # optional: one <stem> per line

Without ``splits/``, every image goes to a split chosen from a hash of its stem (MD5 of
the UTF-8 stem, first 8 hex digits read as a fraction of 2^32): below 0.8 ``train``, below
0.9 ``val``, else ``test``. The rule is deterministic and per image, so adding or removing
images never moves the others between splits. ``split="all"`` gives every image.

Masks are read as 8-bit grayscale (colour masks are converted to luminance) and a pixel
is foreground where its value is above 127: store masks as 0 / 255, not 0 / 1. A split
has masks when every one of its images has one; a split where only some images have a
mask is an error (the message lists the images without one). Each mask must have its
image's size. Images and masks go through the official resize-and-crop.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .base import ImageMaskDataset, PathLike, Sample, read_table
from .errors import DatasetError, MissingDataError
from .transforms import open_image

__all__ = ["ImageFolder", "hash_split", "IMAGE_EXTENSIONS", "FOLDER_LAYOUT"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
FOLDER_LAYOUT = (
    "root/images/<stem>.png|jpg|jpeg, optional root/masks/<stem>.png (foreground > 127), "
    "optional root/splits/{train,val,test}.txt (one stem per line)"
)


def hash_split(stem: str, fractions: tuple = (0.8, 0.1)) -> str:
    """The split of one image stem when there are no split files: 80 / 10 / 10 by MD5."""
    value = int(hashlib.md5(stem.encode("utf-8")).hexdigest()[:8], 16) / 2**32
    if value < fractions[0]:
        return "train"
    if value < fractions[0] + fractions[1]:
        return "val"
    return "test"


class ImageFolder(ImageMaskDataset):
    """A user's folder of images (and optional masks), K = 2 by default.

    Args:
        root: the folder holding ``images/`` (and optionally ``masks/``, ``splits/``).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        image_size: S of the official resize-and-crop.
        n_regions: K the data is meant for (only informative; masks are binary).
    """

    name = "folder"
    download_name = None
    splits = ("train", "val", "test", "all")

    def __init__(self, root: PathLike, split: str, image_size: int = 128, n_regions: int = 2) -> None:
        self.n_regions = int(n_regions)
        super().__init__(root, split, image_size)

    def missing_message(self, what: str) -> str:
        return f"folder data set incomplete at {self.root}: {what}. Expected layout: {FOLDER_LAYOUT}"

    def _check_required(self, required) -> None:
        if not self.root.is_dir():
            raise MissingDataError(
                f"folder data set not found: {self.root} does not exist. Expected layout: {FOLDER_LAYOUT}"
            )
        super()._check_required(required)

    def required_paths(self) -> List[str]:
        return ["images"]

    def _images_by_stem(self) -> Dict[str, Path]:
        images: Dict[str, Path] = {}
        for path in sorted((self.root / "images").iterdir()):
            if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if path.stem in images:
                raise DatasetError(
                    f"folder: two images share the stem {path.stem!r}: {images[path.stem]} and {path}"
                )
            images[path.stem] = path
        if not images:
            raise MissingDataError(self.missing_message(f"no .png/.jpg/.jpeg file in {self.root / 'images'}"))
        return images

    def _split_stems(self, images: Dict[str, Path]) -> List[str]:
        split_dir = self.root / "splits"
        if self.split == "all":
            return sorted(images)
        if not split_dir.is_dir():
            return [stem for stem in sorted(images) if hash_split(stem) == self.split]
        split_file = split_dir / f"{self.split}.txt"
        if not split_file.is_file():
            present = sorted(p.name for p in split_dir.glob("*.txt"))
            raise MissingDataError(
                f"folder: {split_dir} exists but has no {self.split}.txt (found: {', '.join(present) or 'none'}); "
                "write one stem per line, or remove splits/ to use the automatic 80/10/10 split"
            )
        stems = [row[0] for row in read_table(split_file, 1, self.name)]
        unknown = [s for s in stems if s not in images]
        if unknown:
            raise MissingDataError(
                f"folder: {split_file} lists {len(unknown)} stem(s) without an image in "
                f"{self.root / 'images'}: {', '.join(unknown[:5])}"
            )
        return stems

    def list_samples(self) -> List[Sample]:
        images = self._images_by_stem()
        stems = self._split_stems(images)
        mask_dir = self.root / "masks"
        samples = []
        for stem in stems:
            mask: Optional[Path] = mask_dir / f"{stem}.png"
            if not mask.is_file():
                mask = None
            samples.append(Sample(images[stem], mask))
        with_mask = [s for s in samples if s.mask is not None]
        if with_mask and len(with_mask) < len(samples):
            lacking = [s.image.stem for s in samples if s.mask is None]
            raise DatasetError(
                f"folder split {self.split!r}: {len(lacking)} of {len(samples)} images have no mask in "
                f"{mask_dir} (e.g. {', '.join(lacking[:5])}); give every image of a split a mask, or none"
            )
        return samples

    def read_mask(self, path: Path) -> np.ndarray:
        return np.asarray(open_image(path, "mask").convert("L")) > 127
