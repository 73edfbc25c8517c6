"""The official preprocessing, shared by every loader of files on disk.

ReDO's code builds ``Resize(S, NEAREST) -> CenterCrop(S) -> ToTensor`` and then maps the
image to ``[-1, 1]`` with ``x * 2 - 1``. The ground-truth mask goes through the very same
resize and crop, so image and mask stay aligned pixel for pixel. This module reproduces
those steps exactly (same output size rule, same crop offsets, same float32 arithmetic as
torchvision) without building torchvision transforms, and adds the checks the official
loaders lack: readable files, RGB conversion of grayscale / CMYK / palette images, and
image and mask of the same size.

The official pipeline has no random augmentation: every step is a deterministic function
of the file. The data layer therefore splits it in two: the *decode* half (file -> resized,
cropped ``uint8`` pixels: :func:`image_to_uint8`, :func:`mask_to_uint8`), whose output
:class:`~redo_lib.data.cache.ImageCache` may keep in memory, and the *value* half
(:func:`uint8_to_signed`: ``uint8`` -> float32 in ``[-1, 1]``), run on every batch, after
the cache. A random augmentation, if one is ever added, belongs after the cache too.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .errors import CorruptFileError, DatasetError, MissingDataError

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "resized_size",
    "center_crop_box",
    "resize_and_crop",
    "open_image",
    "to_rgb",
    "image_to_uint8",
    "uint8_to_signed",
    "image_to_tensor",
    "mask_to_uint8",
    "mask_to_tensor",
    "first_channel_unit",
    "check_same_size",
    "preprocess_pair",
]


def resized_size(width: int, height: int, size: int) -> Tuple[int, int]:
    """``(new_width, new_height)`` with the shorter side equal to ``size``.

    Same rule as ``torchvision.transforms.Resize(size)`` with an int size: the longer side
    becomes ``int(size * long / short)`` (truncated, not rounded).
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def center_crop_box(width: int, height: int, size: int) -> Tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the central ``size x size`` square.

    Same offsets as ``torchvision.transforms.CenterCrop``: ``int(round((W - S) / 2))``
    (Python's round, half to even).
    """
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return left, top, left + size, top + size


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` with NEAREST interpolation, then centre-crop.

    Spec section 4. Nearest interpolation keeps binary masks binary, and is what the
    official code uses for the images as well.
    """
    new_w, new_h = resized_size(image.width, image.height, size)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), Image.NEAREST)
    if (new_w, new_h) != (size, size):
        image = image.crop(center_crop_box(new_w, new_h, size))
    return image


def open_image(path: PathLike, what: str = "image") -> Image.Image:
    """Open and fully decode an image file; errors name the file.

    Raises :class:`MissingDataError` when the file does not exist and
    :class:`CorruptFileError` when it cannot be decoded (unknown format, truncated data).
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise MissingDataError(f"{what} file not found: {os.fspath(path)}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise CorruptFileError(
            f"cannot read {what} file {os.fspath(path)}: it is corrupt or truncated ({error})"
        ) from error


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert grayscale, CMYK, palette or RGBA images to 3-channel RGB (CUB has a few)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def image_to_uint8(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor (3, H, W): the pixels, before any arithmetic."""
    array = np.asarray(to_rgb(image), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


_SIGNED_TABLES: Dict[torch.device, torch.Tensor] = {}


def _signed_table(device: torch.device) -> torch.Tensor:
    """The 256 values of :func:`uint8_to_signed`, computed on the CPU, kept on ``device``."""
    table = _SIGNED_TABLES.get(device)
    if table is None:
        table = uint8_to_signed(torch.arange(256, dtype=torch.uint8)).to(device)
        _SIGNED_TABLES[device] = table
    return table


def uint8_to_signed(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in ``[-1, 1]``, as ``(x / 255) * 2 - 1``.

    Bit for bit what the official ``ToTensor()`` followed by ``img * 2 - 1`` gives (spec
    section 4). On the CPU the arithmetic runs as written. On another device (a batch
    sent to the GPU as uint8, a quarter of the float32 bytes) the values come from a
    256-entry table computed by that same CPU arithmetic: CUDA divides by a scalar as a
    multiplication by its reciprocal, which can differ in the last bit, and a table makes
    the GPU's tensors equal to the CPU's by construction.
    """
    if pixels.dtype != torch.uint8:
        raise TypeError(f"uint8_to_signed expects uint8 pixels, got {pixels.dtype}")
    if pixels.device.type == "cpu":
        return pixels.float().div_(255).mul_(2).sub_(1)
    return _signed_table(pixels.device)[pixels.long()]


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float32 tensor (3, H, W) in ``[-1, 1]``.

    :func:`uint8_to_signed` of :func:`image_to_uint8`: ``(x / 255) * 2 - 1`` in float32,
    bit for bit what the official ``ToTensor()`` followed by ``img * 2 - 1`` gives.
    """
    return uint8_to_signed(image_to_uint8(image))


def mask_to_uint8(foreground: np.ndarray, size: int) -> torch.Tensor:
    """Boolean (H, W) foreground array -> uint8 (1, S, S) tensor of 0 / 1.

    The mask goes through :func:`resize_and_crop` exactly like its image.
    """
    if foreground.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {foreground.shape}")
    image = Image.fromarray(np.where(foreground, 255, 0).astype(np.uint8), mode="L")
    array = np.asarray(resize_and_crop(image, size)) > 127
    return torch.from_numpy(array.astype(np.uint8)).unsqueeze(0)


def mask_to_tensor(foreground: np.ndarray, size: int) -> torch.Tensor:
    """Boolean (H, W) foreground array -> float32 (1, S, S) tensor of 0 / 1 (:func:`mask_to_uint8`)."""
    return mask_to_uint8(foreground, size).float()


def first_channel_unit(image: Image.Image) -> np.ndarray:
    """The first channel of an image as float32 in ``[0, 1]`` (what ``ToTensor()[:1]`` gives).

    8-bit images are divided by 255, 16-bit ones by 65535, bilevel ones give 0 / 1; palette
    images are first converted to grayscale.
    """
    if image.mode == "P":
        image = image.convert("L")
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[..., 0]
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:
        return array.astype(np.float32) / 65535.0
    return array.astype(np.float32)


def check_same_size(
    image_path: PathLike, image_size: Tuple[int, int], mask_path: PathLike, mask_size: Tuple[int, int]
) -> None:
    """Raise :class:`DatasetError` naming both files when their ``(width, height)`` differ."""
    if tuple(image_size) != tuple(mask_size):
        raise DatasetError(
            f"image and mask have different sizes: {os.fspath(image_path)} is "
            f"{image_size[0]}x{image_size[1]} but {os.fspath(mask_path)} is {mask_size[0]}x{mask_size[1]}"
        )


def preprocess_pair(
    image: Image.Image, foreground: "np.ndarray | None", size: int
) -> Tuple[torch.Tensor, "torch.Tensor | None"]:
    """Apply the official geometry to an image and (optionally) its boolean mask."""
    image_t = image_to_tensor(resize_and_crop(to_rgb(image), size))
    mask_t = None if foreground is None else mask_to_tensor(foreground, size)
    return image_t, mask_t
