r"""How much texture a region carries, in the data and in a generator's redraws.

ReDO's adversarial term favours a mask on the object's outline only if the object's
generator can paint what the object looks like (paper section 3: a redrawn region keeps
the image realistic only when the region is an object *and* its new appearance is one the
data could show). A generator that paints every object as a flat blob cannot fool D on
striped or checkered objects, whatever the mask, so the outline earns it nothing. These
statistics measure that directly, on the **ground-truth** masks, so they judge the
generator alone and not F:

- *spread*: the standard deviation of the colour inside the region, averaged over the
  three channels (0 for a flat colour);
- *edge energy*: the mean absolute difference between horizontally or vertically adjacent
  pixels that both lie inside the region (0 for a flat colour or a smooth ramp's limit;
  2 for columns alternating between -1 and 1).

:func:`redraw_texture` compares them between the real objects and the redraws
:math:`V_k` of :math:`G_k(M_k, z_k) = M_k \odot V_k` (section 3, step 2), with the true
mask as :math:`M_k` and :math:`z_k \sim \mathcal{N}(0, I)`.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

__all__ = ["masked_spread", "masked_edge_energy", "redraw_texture"]


def _hard(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) or (B, H, W) -> (B, 1, H, W) float in {0, 1} (a pixel is inside at >= 0.5)."""
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"expected a mask of shape (B, 1, H, W) or (B, H, W), got {tuple(mask.shape)}")
    return (mask >= 0.5).to(torch.float32)


def masked_spread(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image, the standard deviation of each channel over the pixels inside ``mask``,
    averaged over channels: images (B, C, H, W), mask (B, 1, H, W) -> (B,).

    NaN for an image whose mask is empty (nothing to measure).
    """
    m = _hard(mask)
    x = images.to(torch.float32)
    n = m.flatten(1).sum(1)  # (B,)
    mean = (x * m).flatten(2).sum(2) / n[:, None]  # (B, C)
    var = (((x - mean[:, :, None, None]) * m) ** 2).flatten(2).sum(2) / n[:, None]
    spread = var.clamp_min(0).sqrt().mean(1)
    return torch.where(n > 0, spread, torch.full_like(spread, float("nan")))


def masked_edge_energy(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per image, the mean absolute difference (averaged over channels) between pairs of
    horizontally or vertically adjacent pixels that both lie inside ``mask``: (B,).

    NaN for an image with no such pair.
    """
    m = _hard(mask)
    x = images.to(torch.float32)
    pair_x = m[..., :, 1:] * m[..., :, :-1]  # (B, 1, H, W-1): both pixels inside
    pair_y = m[..., 1:, :] * m[..., :-1, :]
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(1, keepdim=True) * pair_x
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(1, keepdim=True) * pair_y
    n = pair_x.flatten(1).sum(1) + pair_y.flatten(1).sum(1)
    energy = (dx.flatten(1).sum(1) + dy.flatten(1).sum(1)) / n
    return torch.where(n > 0, energy, torch.full_like(energy, float("nan")))


@torch.no_grad()
def redraw_texture(generators, images: torch.Tensor, truth: torch.Tensor, region: int = 0, *,
                   seed: int = 0, generator_region: Optional[int] = None) -> Dict[str, float]:
    """Texture of the real objects against that of ``G_k``'s redraws, on the true masks.

    Args:
        generators: the model's :class:`~redo_lib.generator.RegionGenerators`.
        images: (B, 3, H, W) in [-1, 1].
        truth: (B, K, H, W) ground-truth masks; ``truth[:, region]`` is the measured region.
        region: which ground-truth region to measure (0: the object for K = 2).
        seed: seeds the codes :math:`z_k`, so that a measurement can be repeated.
        generator_region: which generator redraws it (default: ``region``; the regions of
            ReDO have no names, so the generator of the region F gives the object may be
            another one).

    Returns the mean over the images with a non-empty region of ``real_spread``,
    ``redraw_spread``, ``real_edges``, ``redraw_edges`` and the ratios ``spread_ratio``
    and ``edge_ratio`` (redraw over real: 1 when the generator paints as much texture as
    the data has, 0 for flat blobs; NaN where the real objects have none, e.g. the
    edge energy of flat-coloured objects).
    """
    k = region if generator_region is None else generator_region
    was_training = generators.training
    generators.eval()
    try:
        device = next(generators.parameters()).device
        mask = _hard(truth[:, region]).to(device)
        x = images.to(device)
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(x.shape[0], generators.nz, generator=g).to(device)
        redraw = generators.generators[k](mask, z).float()  # M_k * V_k: V_k inside the mask
    finally:
        generators.train(was_training)
    stats = {
        "real_spread": masked_spread(x, mask), "redraw_spread": masked_spread(redraw, mask),
        "real_edges": masked_edge_energy(x, mask), "redraw_edges": masked_edge_energy(redraw, mask),
    }
    out = {name: float(value[~value.isnan()].mean()) for name, value in stats.items()}
    for ratio, (redrawn, real) in {"spread_ratio": ("redraw_spread", "real_spread"),
                                   "edge_ratio": ("redraw_edges", "real_edges")}.items():
        # NaN where the real objects carry none of it (flat colours: no edges to compare with)
        out[ratio] = out[redrawn] / out[real] if out[real] > 1e-6 else float("nan")
    return out
