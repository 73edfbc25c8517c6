"""Base classes shared by every data set of ``redo_lib.data``.

* :class:`ImageMaskDataset`: images (and optional ground-truth masks) stored as files.
  Subclasses (Flowers, LFW, CUB, folder) only say which files form a split and how a
  mask file becomes a boolean foreground array; reading, RGB conversion, the official
  geometry and every error message live here, once.
* :class:`ProceduralDataset`: images generated on the fly (synthetic, Colored-2-MNIST),
  with a vectorised :meth:`~ProceduralDataset.batch` and ``__getitems__`` so that a
  ``DataLoader`` fetches a whole batch in one call.

Items are dicts: ``"image"`` float32 (3, S, S) in [-1, 1], ``"mask"`` float32 (1, S, S)
of 0 / 1 (or (K, S, S) one-hot for K > 2) where ground truth exists, and ``"index"``.

Training never looks at a mask, so an :class:`ImageMaskDataset` also offers
:meth:`~ImageMaskDataset.pixels`, a view of the same split whose items are the uint8
pixels with the mask left undecoded (``with_masks=False``: the training view) or decoded
(the view that fills an evaluation split's :class:`~redo_lib.data.cache.ImageCache`).
The data set itself keeps serving float items with their masks to evaluation.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from .cache import ImageCache, cache_bytes
from .errors import DatasetError, MissingDataError, UnknownNameError
from .transforms import check_same_size, image_to_uint8, mask_to_uint8, open_image, resize_and_crop, to_rgb, uint8_to_signed

PathLike = Union[str, "os.PathLike[str]"]
Item = Dict[str, Union[torch.Tensor, int]]

__all__ = ["Sample", "ImageMaskDataset", "Pixels", "ProceduralDataset", "check_split", "download_hint"]

SPLITS: Tuple[str, ...] = ("train", "val", "test")


def download_hint(download_name: Optional[str], root: PathLike) -> str:
    """The sentence telling the user how to get the files."""
    if download_name is None:
        return ""
    return f" Download it with: redo data download {download_name} --root {os.fspath(root)}"


def check_split(dataset: str, split: str, valid: Sequence[str]) -> str:
    """Return ``split`` or raise :class:`UnknownNameError` listing the valid ones."""
    if split not in valid:
        raise UnknownNameError(
            f"unknown split {split!r} for data set {dataset!r}; valid splits: {', '.join(valid)}"
        )
    return split


class Sample(NamedTuple):
    """One image file and its ground-truth file (``None`` where the split has none)."""

    image: Path
    mask: Optional[Path]


class ImageMaskDataset(Dataset):
    """Images and masks read from files, preprocessed like the official code.

    Subclasses define :attr:`name`, :attr:`required` (paths checked first, so that a
    wrong ``root`` gives one clear message), :meth:`list_samples` and :meth:`read_mask`.
    """

    #: data set name used in messages
    name: ClassVar[str] = "images"
    #: ``redo data download <download_name>`` fetches it (``None``: nothing to download)
    download_name: ClassVar[Optional[str]] = None
    #: valid split names
    splits: ClassVar[Tuple[str, ...]] = SPLITS
    #: number of regions K the data set is meant for
    n_regions: int = 2

    def __init__(self, root: PathLike, split: str, image_size: int = 128) -> None:
        super().__init__()
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.split = check_split(self.name, split, self.splits)
        self.root = Path(root)
        self.image_size = int(image_size)
        self._check_required(self.required_paths())
        self.samples: List[Sample] = self.list_samples()
        self._check_samples_exist()
        with_masks = sum(s.mask is not None for s in self.samples)
        if 0 < with_masks < len(self.samples):
            raise DatasetError(
                f"{self.name} split {split!r} at {self.root}: {with_masks} of "
                f"{len(self.samples)} images have a mask; a split needs masks for all or none"
            )
        #: whether items carry a ``"mask"`` key
        self.has_masks: bool = len(self.samples) > 0 and with_masks == len(self.samples)
        #: decoded items kept in memory (:meth:`enable_cache`); ``None``: every item is decoded
        self.cache: Optional[ImageCache] = None

    # ----------------------------------------------------------------- subclass hooks
    def required_paths(self) -> List[str]:
        """Paths (relative to root) that must exist before anything else is read."""
        return []

    def list_samples(self) -> List[Sample]:
        """The split's samples, in the official order."""
        raise NotImplementedError

    def read_mask(self, path: Path) -> np.ndarray:
        """The boolean (H, W) foreground array of a mask file (the data set's rule)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- checks
    def missing_message(self, what: str) -> str:
        return f"{self.name} data set incomplete at {self.root}: {what}." + download_hint(
            self.download_name, self.root
        )

    def _check_required(self, required: Sequence[str]) -> None:
        if not self.root.is_dir():
            raise MissingDataError(
                f"{self.name} data set not found: folder {self.root} does not exist."
                + download_hint(self.download_name, self.root)
            )
        missing = [p for p in required if not (self.root / p).exists()]
        if missing:
            raise MissingDataError(self.missing_message("missing " + ", ".join(missing)))

    def _check_samples_exist(self) -> None:
        missing: List[Path] = []
        for sample in self.samples:
            for path in (sample.image, sample.mask):
                if path is not None and not path.is_file():
                    missing.append(path)
        if missing:
            shown = ", ".join(os.fspath(p) for p in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise MissingDataError(
                self.missing_message(f"{len(missing)} file(s) listed by the split are missing: {shown}{more}")
            )

    # ----------------------------------------------------------------- Dataset API
    def __len__(self) -> int:
        return len(self.samples)

    def _check_index(self, index: int) -> int:
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} split {self.split!r} of {n} images")
        return int(index) % n

    def load(self, index: int, with_mask: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Decode item ``index``: uint8 image (3, S, S) and uint8 0 / 1 mask (1, S, S) or ``None``.

        The official geometry (spec section 4) without the float conversion. With
        ``with_mask=False`` the mask file is not opened at all (training), so the
        image / mask size check is left to the reads that do use the mask.
        """
        sample = self.samples[self._check_index(index)]
        image = open_image(sample.image, "image")
        pixels = image_to_uint8(resize_and_crop(to_rgb(image), self.image_size))
        if sample.mask is None or not with_mask:
            return pixels, None
        foreground = self.read_mask(sample.mask)
        height, width = foreground.shape
        check_same_size(sample.image, image.size, sample.mask, (width, height))
        return pixels, mask_to_uint8(foreground, self.image_size)

    def read_pixels(self, index: int, with_mask: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """:meth:`load`'s output, from the cache where it holds the item (never stored here)."""
        index = self._check_index(index)
        with_mask = with_mask and self.has_masks
        cache = self.cache
        if cache is not None and cache.holds(index, with_mask=with_mask):
            return cache.images[index], (cache.masks[index] if with_mask else None)
        return self.load(index, with_mask=with_mask)

    def __getitem__(self, index: int) -> Item:
        index = self._check_index(index)
        pixels, mask = self.read_pixels(index)
        item: Item = {"image": uint8_to_signed(pixels), "index": index}
        if mask is not None:
            item["mask"] = mask.float()
        return item

    # ----------------------------------------------------------------- training view and cache
    def pixels(self, with_masks: bool = False) -> "Pixels":
        """This split as uint8 items; ``with_masks=False`` (training) never decodes a mask."""
        return Pixels(self, with_masks)

    def cache_bytes(self, n_images: Optional[int] = None, n_masks: Optional[int] = None) -> int:
        """Bytes that caching ``n_images`` images and ``n_masks`` masks takes (default: all)."""
        n = len(self)
        n_images = n if n_images is None else min(int(n_images), n)
        n_masks = (n if self.has_masks else 0) if n_masks is None else min(int(n_masks), n)
        return cache_bytes(n_images, self.image_size, n_masks if self.has_masks else 0)

    def enable_cache(self) -> ImageCache:
        """Keep decoded items in memory from now on (a new :class:`ImageCache` unless one exists)."""
        if self.cache is None or len(self.cache) != len(self) or self.cache.image_size != self.image_size:
            self.cache = ImageCache(len(self), self.image_size, 1 if self.has_masks else 0)
        return self.cache

    def __getstate__(self) -> Dict:
        # A loader worker started by pickling (spawn, forkserver) receives no cache: only
        # the main process reads and fills it (redo_lib.training.data.fill_cache).
        state = self.__dict__.copy()
        state["cache"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, images={len(self)}, "
            f"image_size={self.image_size}, has_masks={self.has_masks}, root={os.fspath(self.root)!r})"
        )


class Pixels(Dataset):
    """A view of an :class:`ImageMaskDataset` whose items are uint8 pixels.

    Items: ``{"image": uint8 (3, S, S), "index": i}``, plus ``"mask"`` uint8 (1, S, S) with
    ``with_masks=True`` on a split that has masks. The training view (``with_masks=False``)
    never opens a mask file: training uses none, and a Flowers segmentation costs as much
    to decode as its image. Items come from the source's cache where it holds them.
    Pixels go to the device as uint8 and become float32 there
    (:func:`~redo_lib.data.transforms.uint8_to_signed`), with the same values as the
    source's float items.
    """

    def __init__(self, source: ImageMaskDataset, with_masks: bool = False) -> None:
        self.source = source
        self.with_masks = bool(with_masks) and source.has_masks
        self.has_masks = self.with_masks
        self.name = source.name
        self.split = source.split
        self.image_size = source.image_size
        self.n_regions = source.n_regions

    @property
    def cache(self) -> Optional[ImageCache]:
        """The source's cache (``None`` when caching is off)."""
        return self.source.cache

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Item:
        index = self.source._check_index(index)
        pixels, mask = self.source.read_pixels(index, with_mask=self.with_masks)
        item: Item = {"image": pixels, "index": index}
        if mask is not None:
            item["mask"] = mask
        return item

    def __repr__(self) -> str:
        return f"Pixels({self.source!r}, with_masks={self.with_masks})"


class ProceduralDataset(Dataset):
    """A data set whose items are generated from ``(seed, split, index)``.

    Subclasses implement :meth:`batch`, which returns stacked tensors for a list of
    indices; single items and ``DataLoader`` batches (through ``__getitems__``) are
    views of it, so a batch costs one vectorised call.
    """

    name: ClassVar[str] = "procedural"
    splits: ClassVar[Tuple[str, ...]] = SPLITS
    split: str = "train"
    n_regions: int = 2
    has_masks: bool = True
    length: int = 0

    def batch(self, indices: Sequence[int]) -> Dict[str, torch.Tensor]:
        """``{"image": (B, 3, S, S), "mask": (B, K', S, S), "index": (B,)}`` for ``indices``."""
        raise NotImplementedError

    def _check_indices(self, indices: Sequence[int]) -> np.ndarray:
        array = np.asarray(indices, dtype=np.int64).reshape(-1)
        if array.size and (array.min() < 0 or array.max() >= self.length):
            raise IndexError(
                f"indices must be in [0, {self.length}) for {self.name} split {self.split!r}, "
                f"got min {array.min()} max {array.max()}"
            )
        return array

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Item:
        if index < 0:
            index += self.length
        out = self.batch([index])
        item: Item = {key: value[0] for key, value in out.items() if key != "index"}
        item["index"] = int(out["index"][0])
        return item

    def __getitems__(self, indices: Sequence[int]) -> List[Item]:
        out = self.batch(indices)
        keys = [k for k in out if k != "index"]
        return [
            {**{k: out[k][i] for k in keys}, "index": int(out["index"][i])} for i in range(len(indices))
        ]


def read_table(path: Path, n_fields: int, dataset: str) -> List[List[str]]:
    """Rows of a whitespace-separated text file with ``n_fields`` columns (blank lines skipped).

    A malformed line raises :class:`DatasetError` naming the file and the line number.
    """
    rows: List[List[str]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingDataError(f"{dataset}: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{dataset}: cannot read {path}: {error}") from error
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_fields:
            raise DatasetError(
                f"{dataset}: {path} line {number}: expected {n_fields} field(s), got {line!r}"
            )
        rows.append(fields)
    return rows
