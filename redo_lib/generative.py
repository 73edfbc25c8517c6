r"""The generative process of ReDO (paper section 3).

1. *Composition*: :math:`M = F(I)`, K soft masks that sum to 1 at every pixel.
2. *Redrawing*: :math:`G_k(M_k, z_k) = M_k \odot V_k` with :math:`z_k \sim \mathcal{N}(0, I)`,
   where :math:`V_k` (the tanh output of the generator network) is the new appearance of
   region k; the generator itself returns it already masked (the book's one definition).
3. *Assembling*: region k redrawn, the others kept:
   :math:`I^{(k)} = G_k(M_k, z_k) + (1 - M_k) \odot I = M_k \odot V_k + (1 - M_k) \odot I`.

So the composite of region k is ``redraws[:, k] + (1 - masks[:, k]) * images``. The official code redraws *every* region at
every step (correction 1): the K composites of each image are stacked into B*K fakes.
The information network sees the *fully generated* image :math:`\sum_k M_k \odot V_k`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

__all__ = [
    "sample_z",
    "assemble",
    "fully_generated",
    "flatten_regions",
    "Redraw",
    "redraw",
]


def sample_z(batch_size: int, n_regions: int, nz: int, *, device=None, dtype=None,
             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One code per image and region, :math:`z \\sim \\mathcal{N}(0, I)`: (B, K, nz)."""
    return torch.randn(batch_size, n_regions, nz, device=device, dtype=dtype, generator=generator)


def assemble(images: torch.Tensor, masks: torch.Tensor, redraws: torch.Tensor) -> torch.Tensor:
    r"""The K composites of each image, region k redrawn and the rest original.

    .. math:: I^{(k)} = G_k(M_k, z_k) + (1 - M_k) \odot I

    images (B, 3, H, W), masks (B, K, H, W), redraws (B, K, 3, H, W) -> (B, K, 3, H, W).
    """
    # masks: (B, K, 1, H, W), images: (B, 1, 3, H, W)
    return redraws + (1 - masks.unsqueeze(2)) * images.unsqueeze(1)


def fully_generated(redraws: torch.Tensor) -> torch.Tensor:
    r"""The image in which every region is redrawn: :math:`\sum_k M_k \odot V_k`, (B, 3, H, W)."""
    return redraws.sum(dim=1)


def flatten_regions(composites: torch.Tensor) -> torch.Tensor:
    """(B, K, 3, H, W) -> (B*K, 3, H, W): the fakes D sees, image-major (official order)."""
    return composites.reshape(-1, *composites.shape[2:])


@dataclass
class Redraw:
    """Everything one pass of the generative process produces."""

    masks: torch.Tensor  # (B, K, H, W)
    z: torch.Tensor  # (B, K, nz)
    redraws: torch.Tensor  # (B, K, 3, H, W), region k is G_k(M_k, z_k) = M_k * V_k
    composites: torch.Tensor  # (B, K, 3, H, W), region k redrawn, the rest original
    regions: Optional[Sequence[int]] = None  # which regions were redrawn (None: all)

    @property
    def fakes(self) -> torch.Tensor:
        """The redrawn images D judges: (B*K, 3, H, W), or (B, 3, H, W) for one region."""
        if self.regions is None:
            return flatten_regions(self.composites)
        return flatten_regions(self.composites[:, list(self.regions)])

    @property
    def full(self) -> torch.Tensor:
        """The fully generated image delta sees (correct only when every region is redrawn)."""
        return fully_generated(self.redraws)


def redraw(model, images: torch.Tensor, z: Optional[torch.Tensor] = None,
           regions: Optional[Sequence[int]] = None, masks: Optional[torch.Tensor] = None) -> Redraw:
    """Run composition, redrawing and assembling with a :class:`~redo_lib.ReDO` model.

    ``regions=None`` redraws every region (the official loop); ``regions=[i]`` only region i
    (the preprint's Algorithm 1). ``masks`` skips F (hand-made masks, for teaching).
    """
    if masks is None:
        masks = model.mask_net(images)
    if z is None:
        z = sample_z(images.shape[0], model.n_regions, model.nz, device=images.device, dtype=images.dtype)
    redraws = model.generator(masks, z, regions=regions)
    return Redraw(masks, z, redraws, assemble(images, masks, redraws), regions)
