"""Sample grids written at each evaluation (like the official ``out_%05d.png``).

:func:`sample_grid` uses :func:`redo_lib.viz.sample_grid` when the visualisation module
provides it, and otherwise a small built-in layout: one row per image with the input,
the ground truth, region 0's hard and soft masks, then for every region k the image
with region k redrawn from each of the fixed codes.
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["fixed_codes", "sample_grid", "basic_sample_grid"]


def fixed_codes(n_z: int, nz: int, seed: int = 0) -> torch.Tensor:
    """(n_z, nz) codes from their own generator: the same figures across a run."""
    g = torch.Generator().manual_seed(int(seed) + 7919)
    return torch.randn(n_z, nz, generator=g)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> (B, 3, H, W) in [-1, 1]."""
    return (x.float() * 2 - 1).expand(-1, 3, -1, -1)


@torch.no_grad()
def basic_sample_grid(model, images: torch.Tensor, truth: Optional[torch.Tensor],
                      z_fixed: torch.Tensor) -> torch.Tensor:
    """(3, H, W) image in [0, 1]; the model is used as it is (call ``.eval()`` first).

    ``z_fixed`` (n_z, nz): column j redraws region k with code ``z_fixed[j]``.
    """
    from torchvision.utils import make_grid

    from ..generative import assemble

    b = images.shape[0]
    masks = model.mask_net(images)
    columns = [images]
    if truth is not None:
        t = truth.float()
        t = t[:, :1] if t.shape[1] <= 2 else (1 - t[:, -1:])  # foreground = all but background
        columns.append(_gray(t))
    columns.append(_gray((masks[:, :1] >= 0.5).float()))
    columns.append(_gray(masks[:, :1]))
    k_regions = masks.shape[1]
    for k in range(k_regions):
        for j in range(z_fixed.shape[0]):
            z = z_fixed[j].to(images).expand(b, k_regions, -1)
            redraws = model.generator(masks, z, regions=[k])
            columns.append(assemble(images, masks, redraws)[:, k])
    grid = torch.stack(columns, dim=1).reshape(-1, *images.shape[1:])  # row-major: image by image
    return make_grid(grid.float().cpu(), nrow=len(columns), normalize=True, value_range=(-1, 1), padding=1)


def sample_grid(model, images: torch.Tensor, truth: Optional[torch.Tensor], z_fixed: torch.Tensor) -> torch.Tensor:
    try:
        from ..viz import sample_grid as viz_sample_grid  # type: ignore[attr-defined]
    except ImportError:
        viz_sample_grid = None
    if viz_sample_grid is not None:
        return viz_sample_grid(model, images, truth, z_fixed)
    return basic_sample_grid(model, images, truth, z_fixed)


def save_grid(grid: torch.Tensor, path) -> None:
    from torchvision.utils import save_image

    save_image(grid, str(path))
