"""Decoded, preprocessed images (and masks) of one split, kept in memory as uint8.

Decoding is what limits the speed of training on files: a 500 x 500 Flowers JPEG takes a
few milliseconds to decode, its segmentation as long again, and on Colab's two cores that
caps a GPU run far below what the GPU can do (issue 17). The official preprocessing is a
deterministic function of the file (no random augmentation, spec section 4), so its
output can be computed once and reused: :class:`ImageCache` holds, for one split of an
:class:`~redo_lib.data.base.ImageMaskDataset`, the resized and cropped pixels as uint8
``(N, 3, S, S)`` (a quarter of float32's bytes: Flowers' training split at 128 x 128 is
302 MB) and, where wanted, the 0 / 1 masks as uint8 ``(N, 1, S, S)``. The conversion to
float32 in ``[-1, 1]`` (:func:`~redo_lib.data.transforms.uint8_to_signed`) runs on every
batch, after the cache, so cached and decoded items are equal bit for bit.

The storage is allocated with ``torch.empty``; the operating system commits its pages only
as they are written, so a cache of which only a subset is ever filled (a validation split
scored on its first ``max_eval_images`` images) costs only that subset. Only the main
process writes to a cache (:func:`redo_lib.training.data.fill_cache`); loader workers
never receive one (see ``ImageMaskDataset.__getstate__``) and never write to one.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch

__all__ = ["ImageCache", "cache_bytes"]


def cache_bytes(n_images: int, image_size: int, n_masks: int = 0, mask_channels: int = 1) -> int:
    """Bytes that ``n_images`` uint8 RGB images and ``n_masks`` uint8 masks of side S take."""
    pixels = int(image_size) ** 2
    return int(n_images) * 3 * pixels + int(n_masks) * int(mask_channels) * pixels


class ImageCache:
    """uint8 images (and optionally masks) of ``n_items`` items of side ``image_size``.

    Args:
        n_items: the split's length.
        image_size: S.
        mask_channels: channels of a mask (1 for the binary masks of files on disk; 0: the
            split has no masks, none are stored).
    """

    def __init__(self, n_items: int, image_size: int, mask_channels: int = 0) -> None:
        if n_items < 0 or image_size < 1 or mask_channels < 0:
            raise ValueError(f"invalid cache shape: {n_items} items, size {image_size}, {mask_channels} mask channels")
        self.n_items = int(n_items)
        self.image_size = int(image_size)
        self.mask_channels = int(mask_channels)
        size = self.image_size
        self.images = torch.empty((self.n_items, 3, size, size), dtype=torch.uint8)
        self.has_image = torch.zeros(self.n_items, dtype=torch.bool)
        self.masks: Optional[torch.Tensor] = None
        self.has_mask = torch.zeros(self.n_items, dtype=torch.bool)
        if self.mask_channels:
            self.masks = torch.empty((self.n_items, self.mask_channels, size, size), dtype=torch.uint8)
        #: loader workers that decode the first pass (0: in the main process)
        self.fill_workers = 0
        #: whether the first pass shows a progress bar
        self.progress = False

    def __len__(self) -> int:
        return self.n_items

    def holds(self, index: int, with_mask: bool = False) -> bool:
        """Whether item ``index`` (and its mask, if asked) is stored."""
        if not bool(self.has_image[index]):
            return False
        return not with_mask or bool(self.has_mask[index])

    def missing(self, indices: Sequence[int], with_masks: bool = False) -> List[int]:
        """The indices of ``indices`` whose image (or, with ``with_masks``, mask) is not stored."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        if index.numel() == 0:
            return []
        stored = self.has_image[index]
        if with_masks:
            stored &= self.has_mask[index]
        return index[~stored].tolist()

    @property
    def complete(self) -> bool:
        """Every image is stored."""
        return bool(self.has_image.all())

    def stored_bytes(self) -> int:
        """Bytes of what is stored so far (resident memory, once the pages are written)."""
        masks = int(self.has_mask.sum()) if self.masks is not None else 0
        return cache_bytes(int(self.has_image.sum()), self.image_size, masks, self.mask_channels)

    def store(self, indices: Sequence[int], images: torch.Tensor, masks: Optional[torch.Tensor] = None) -> None:
        """Store uint8 ``images`` (B, 3, S, S) (and ``masks`` (B, C, S, S)) of items ``indices``."""
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != tuple(self.images.shape[1:]):
            raise ValueError(f"expected uint8 images of shape (B, {', '.join(map(str, self.images.shape[1:]))}), "
                             f"got {images.dtype} {tuple(images.shape)}")
        self.images[index] = images
        self.has_image[index] = True
        if masks is not None:
            if self.masks is None:
                raise ValueError("this cache holds no masks (mask_channels=0)")
            self.masks[index] = masks.to(torch.uint8)
            self.has_mask[index] = True

    def images_at(self, indices: Sequence[int], pin_memory: bool = False) -> torch.Tensor:
        """uint8 images (B, 3, S, S) of ``indices`` (in page-locked memory with ``pin_memory``).

        A page-locked copy lets ``.to("cuda", non_blocking=True)`` overlap the transfer
        with the GPU's work; PyTorch's pinned-memory allocator keeps the block alive until
        that copy has finished, so a fresh one per batch is safe.
        """
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if not bool(self.has_image[index].all()):
            raise KeyError(f"images {self.missing(index.tolist())[:5]} are not in the cache yet")
        out = torch.empty((index.numel(), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=pin_memory)
        return torch.index_select(self.images, 0, index, out=out)

    def masks_at(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 masks (B, C, S, S) of ``indices``."""
        index = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if self.masks is None or not bool(self.has_mask[index].all()):
            raise KeyError("masks of these items are not in the cache")
        return self.masks[index]

    def __repr__(self) -> str:
        return (f"ImageCache({int(self.has_image.sum())}/{self.n_items} images, "
                f"{int(self.has_mask.sum())} masks, size {self.image_size}, "
                f"{self.stored_bytes() / 1e6:.1f} MB)")
