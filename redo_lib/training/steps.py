r"""The two halves of one training iteration, as modules (so that DDP can wrap them).

- :class:`GeneratorStep` holds F, the generators and delta, which one loss updates
  together: :math:`-\mathbb{E}[D(I_{gen})] + \lambda_z \mathcal{L}_{info}` (plus, as
  additions, the minimum-area hinge and the binarisation term when they are on). D is only
  *called* (held outside the module's parameters, so DDP never syncs it here).
- :class:`DiscriminatorStep` holds D: the hinge loss on reals and (given) fakes, D
  called on the reals first, then on the fakes, as the official loop does (every call in
  train mode is one power iteration of spectral norm).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from ..generative import redraw
from ..losses import (binarization_loss, discriminator_hinge_loss, generator_adversarial_loss, information_loss,
                      min_area_loss)

__all__ = ["GeneratorStep", "GeneratorLosses", "DiscriminatorStep", "make_fakes"]


class GeneratorLosses(NamedTuple):
    """What one generator step computes: its loss terms and the fakes D then judges."""

    g_adv: torch.Tensor  # -E[D(I_gen)]
    info: torch.Tensor  # L_info (0 without delta)
    fakes: torch.Tensor  # (B*K, 3, H, W), or (B, ...) for one region
    additions: torch.Tensor  # the weighted terms of the additions on F's masks (0 when all are off)


def make_fakes(model, images: torch.Tensor, z: torch.Tensor, region: Optional[int]) -> torch.Tensor:
    """The images D judges: all K composites (B*K), or region ``region``'s only (B)."""
    if region is None:
        return redraw(model, images, z).fakes
    return redraw(model, images, z, regions=[region]).fakes


class GeneratorStep(nn.Module):
    """F + G_1..G_K + delta; ``forward`` returns :class:`GeneratorLosses`.

    Additions on F's masks, not ReDO, off at 0: ``min_area`` (the minimum-area hinge,
    weighted by ``min_area_weight``) and ``binarization`` (the binarisation term's weight).
    """

    def __init__(self, mask_net: nn.Module, generator: nn.Module, info_net: Optional[nn.Module],
                 discriminator: nn.Module, n_regions: int, nz: int, info_kind: str = "mean_squared",
                 min_area: float = 0.0, min_area_weight: float = 10.0, binarization: float = 0.0) -> None:
        super().__init__()
        self.mask_net = mask_net
        self.generator = generator
        self.info_net = info_net  # None when lambda_z == 0 (delta unused, as in the official code)
        # Not a registered submodule: D's parameters stay out of this module (and of its DDP).
        object.__setattr__(self, "_discriminator", discriminator)
        self.n_regions = n_regions
        self.nz = nz
        self.info_kind = info_kind
        self.min_area = min_area
        self.min_area_weight = min_area_weight
        self.binarization = binarization

    def forward(self, images: torch.Tensor, z: torch.Tensor, region: Optional[int] = None) -> GeneratorLosses:
        if region is None:
            r = redraw(self, images, z)
        else:
            r = redraw(self, images, z, regions=[region])
        fakes = r.fakes
        g_adv = generator_adversarial_loss(self._discriminator(fakes).float())
        if self.info_net is None:
            info = g_adv.new_zeros(())
        elif region is None:
            # delta sees the fully generated image sum_k G_k(M_k, z_k) (official code)
            info = information_loss(self.info_net(r.full).float(), z.float(), self.info_kind)
        else:
            # preprint: delta sees the partially redrawn image and predicts z_i
            info = information_loss(self.info_net(fakes)[:, region].float(), z[:, region].float(),
                                    self.info_kind)
        return GeneratorLosses(g_adv, info, fakes, self._additions(r.masks.float()))

    def _additions(self, masks: torch.Tensor) -> torch.Tensor:
        total = masks.new_zeros(())
        if self.min_area > 0:
            total = total + self.min_area_weight * min_area_loss(masks, self.min_area)
        if self.binarization > 0:
            total = total + self.binarization * binarization_loss(masks)
        return total


class DiscriminatorStep(nn.Module):
    """D; ``forward(reals, fakes)`` returns the hinge loss (to minimise)."""

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(self, reals: torch.Tensor, fakes: torch.Tensor) -> torch.Tensor:
        d_real = self.discriminator(reals).float()
        d_fake = self.discriminator(fakes).float()
        return discriminator_hinge_loss(d_real, d_fake)
