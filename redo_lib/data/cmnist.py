"""Colored-2-MNIST, the official toy data set for K = 3.

Each image is a canvas of one random grey-ish colour with two MNIST digits pasted on it:
an even digit in a dark colour and an odd digit in a light colour, each scaled to 7/16
of the canvas (56 x 56 on 128 x 128) with nearest interpolation, binarised at 0.5, at a
random position and in a random stacking order. Masks are one-hot over three channels:
even digit, odd digit, background (the official channel order).

Colours follow the official generator (RGB in [0, 1]): background uniform in
[0.33, 0.66] per channel with R = G; dark digit uniform in [0, 0.33] with G = B; light
digit uniform in [0.66, 1] with R = B. Positions are uniform integers in
``[0, S - d - 1]`` (the official range, which never touches the last row or column).

Differences from the official loader, which draws digits in data-set order from shared
iterators and reports a length of 1000 for every split: here item ``i`` of a split is a
pure function of ``(seed, split, i)`` (its digits are picked at random from the split's
pool of even / odd digits), so items are reproducible, order-free and worker-safe.

Splits: ``train`` uses the first 50,000 images of MNIST's training set, ``val`` its last
10,000, ``test`` MNIST's test set (10,000); the official code had no separate
validation pool. The default length of a split is the size of its pool.

Files: torchvision's layout, ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
(optionally ``.gz``), as written by ``redo data download mnist --root DIR`` or by
``torchvision.datasets.MNIST(root, download=True)``, and read with torchvision's own
readers (``torchvision.datasets.mnist.read_image_file`` / ``read_label_file``).
"""
from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .base import PathLike, ProceduralDataset, check_split, download_hint
from .errors import CorruptFileError, MissingDataError
from .hashing import stream_key, uniforms

__all__ = [
    "ColoredMNIST", "read_mnist_images", "read_mnist_labels", "load_mnist", "mnist_file", "MNIST_FILES", "VAL_SIZE",
]

MNIST_FILES: Mapping[str, str] = MappingProxyType({
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
})
#: images at the end of MNIST's training set kept for validation
VAL_SIZE = 10000


def _read_with(reader: Callable[[str], torch.Tensor], path: PathLike, what: str) -> torch.Tensor:
    """Run one of torchvision's MNIST readers on ``path`` (plain or ``.gz``); errors name the file.

    torchvision's readers (``torchvision.datasets.mnist``) open plain files only, so a
    ``.gz`` file is decompressed into a temporary folder first. Whatever goes wrong in the
    parse (bad magic number, truncated data, wrong type or number of dimensions; torchvision
    signals these with assertions, ``RuntimeError``, ``ValueError`` or ``TypeError``)
    becomes a :class:`CorruptFileError` that says which file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"MNIST file not found: {path}")
    try:
        if path.suffix == ".gz":
            with tempfile.TemporaryDirectory(prefix="redo-mnist-") as folder:
                plain = Path(folder) / path.stem
                with gzip.open(path, "rb") as source, open(plain, "wb") as target:
                    shutil.copyfileobj(source, target)
                return reader(str(plain))
        return reader(str(path))
    except (OSError, EOFError) as error:  # includes gzip.BadGzipFile
        raise CorruptFileError(f"cannot read {path}: {error}") from error
    except (AssertionError, RuntimeError, ValueError, TypeError, KeyError, IndexError) as error:
        detail = str(error) or type(error).__name__
        raise CorruptFileError(
            f"{path} is not a valid MNIST {what} file (idx format; bad magic number, truncated or "
            f"corrupt): torchvision's reader says: {detail}"
        ) from error


def read_mnist_images(path: PathLike) -> np.ndarray:
    """MNIST images ``(N, H, W)`` uint8 from an idx3 file (plain or ``.gz``), by torchvision's reader."""
    from torchvision.datasets.mnist import read_image_file

    return _read_with(read_image_file, path, "image").numpy()


def read_mnist_labels(path: PathLike) -> np.ndarray:
    """MNIST labels ``(N,)`` uint8 from an idx1 file (plain or ``.gz``), by torchvision's reader."""
    from torchvision.datasets.mnist import read_label_file

    labels = _read_with(read_label_file, path, "label")  # int64 (torchvision widens the uint8 data)
    return labels.to(torch.uint8).numpy()


def mnist_file(root: Path, key: str) -> Path:
    """Path of one MNIST file under ``root/MNIST/raw``: the plain file, else its ``.gz``."""
    raw = Path(root) / "MNIST" / "raw"
    plain = raw / MNIST_FILES[key]
    if plain.is_file():
        return plain
    compressed = raw / (MNIST_FILES[key] + ".gz")
    if compressed.is_file():
        return compressed
    raise MissingDataError(
        f"MNIST (for cmnist) not found: neither {plain} nor {compressed} exists."
        + download_hint("mnist", root)
    )


def load_mnist(root: PathLike, train: bool) -> Tuple[np.ndarray, np.ndarray]:
    """``(images (N, 28, 28) uint8, labels (N,) uint8)`` of MNIST's train or test set."""
    root = Path(root)
    prefix = "train" if train else "test"
    images_path, labels_path = mnist_file(root, f"{prefix}_images"), mnist_file(root, f"{prefix}_labels")
    images, labels = read_mnist_images(images_path), read_mnist_labels(labels_path)
    if len(images) != len(labels):
        raise CorruptFileError(
            f"MNIST files disagree: {images_path} has shape {images.shape}, {labels_path} has shape {labels.shape}"
        )
    return images, labels


class ColoredMNIST(ProceduralDataset):
    """Colored-2-MNIST (K = 3), deterministic by ``(seed, split, index)``.

    Args:
        root: folder containing ``MNIST/raw`` (torchvision's layout).
        split: ``"train"`` (MNIST train minus its last 10,000), ``"val"`` (those 10,000)
            or ``"test"`` (MNIST test).
        image_size: canvas side S (digits are ``round(7 S / 16)`` pixels: 56 at 128).
        seed: random seed of the compositions.
        length: number of items (default: the number of MNIST images in the split).
        val_size: images at the end of MNIST's training set used for ``val`` (10,000).
    """

    name = "cmnist"
    n_regions = 3
    has_masks = True

    def __init__(
        self,
        root: PathLike,
        split: str,
        image_size: int = 128,
        seed: int = 0,
        length: Optional[int] = None,
        val_size: int = VAL_SIZE,
    ) -> None:
        super().__init__()
        self.split = check_split(self.name, split, self.splits)
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        self.root = Path(root)
        self.image_size = int(image_size)
        self.seed = int(seed)
        images, labels = load_mnist(self.root, train=split != "test")
        if split != "test":
            if not 0 < val_size < len(images):
                raise CorruptFileError(
                    f"MNIST training set at {self.root} has {len(images)} images, "
                    f"need more than val_size={val_size}"
                )
            cut = slice(None, -val_size) if split == "train" else slice(-val_size, None)
            images, labels = images[cut], labels[cut]
        self.digit_size = int(round(self.image_size * 7 / 16))
        # nearest-neighbour resampling of the 28 x 28 digit, then binarisation at 0.5
        source = np.minimum(((np.arange(self.digit_size) + 0.5) * images.shape[1] / self.digit_size).astype(np.int64), images.shape[1] - 1)
        self._even = np.flatnonzero(labels % 2 == 0)
        self._odd = np.flatnonzero(labels % 2 == 1)
        if len(self._even) == 0 or len(self._odd) == 0:
            raise CorruptFileError(f"MNIST {split} pool at {self.root} lacks even or odd digits")
        self._images = images
        self._source = source
        self.length = len(images) if length is None else int(length)
        self._key = stream_key(self.seed, "redo-cmnist", self.split)

    def _digit(self, index: int) -> np.ndarray:
        digit = self._images[index][np.ix_(self._source, self._source)]
        return digit > 127  # ToTensor() / 255 > 0.5

    def batch(self, indices: Sequence[int]) -> Dict[str, torch.Tensor]:
        idx = self._check_indices(indices)
        size, d = self.image_size, self.digit_size
        u = uniforms(self._key, idx, 16)
        n = len(idx)
        images = np.empty((n, 3, size, size), dtype=np.float32)
        masks = np.zeros((n, 3, size, size), dtype=np.float32)
        span = size - d  # positions 0 .. size - d - 1
        for row in range(n):
            p = u[row]
            grey = 0.33 + 0.33 * p[0:3]
            background = np.array([grey[1], grey[1], grey[2]], dtype=np.float32)
            dark = 0.33 * p[3:6]
            dark_colour = np.array([dark[0], dark[2], dark[2]], dtype=np.float32)
            light = 0.66 + 0.34 * p[6:9]
            light_colour = np.array([light[2], light[1], light[2]], dtype=np.float32)
            digits = (
                self._digit(int(self._even[int(p[9] * len(self._even))])),
                self._digit(int(self._odd[int(p[10] * len(self._odd))])),
            )
            positions = [(int(p[11] * span), int(p[12] * span)), (int(p[13] * span), int(p[14] * span))]
            order = (0, 1) if p[15] < 0.5 else (1, 0)
            canvas = np.broadcast_to(background[:, None, None], (3, size, size)).copy()
            label = np.full((size, size), 2, dtype=np.int64)
            for k in order:
                top, left = positions[k]
                window = (slice(top, top + d), slice(left, left + d))
                colour = dark_colour if k == 0 else light_colour
                canvas[(slice(None),) + window][:, digits[k]] = colour[:, None]
                label[window][digits[k]] = k
            images[row] = canvas
            masks[row] = label[None] == np.arange(3)[:, None, None]
        images *= 2
        images -= 1
        return {"image": torch.from_numpy(images), "mask": torch.from_numpy(masks), "index": torch.from_numpy(idx.copy())}

    def __repr__(self) -> str:
        return (
            f"ColoredMNIST(split={self.split!r}, length={self.length}, image_size={self.image_size}, "
            f"seed={self.seed}, root={str(self.root)!r})"
        )
