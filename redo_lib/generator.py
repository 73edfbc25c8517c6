"""The region generators G_k (official ``_netGenX``): (mask M_k, code z_k) -> redrawn region.

Each G_k is a SAGAN/BigGAN-style residual generator that starts from a
4 x 4 map computed from z, doubles the resolution in every :class:`ResidualUp` block,
modulates every normalisation with z (:class:`~redo_lib.layers.ConditionalInstanceNorm`)
and sees the mask, average-pooled to the current resolution, in every block. Its output
is multiplied by the mask, so region k's redraw is zero outside M_k.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import (ConditionalInstanceNorm, SelfAttention, init_orthogonal, own_power_iterations,
                     power_iterations, sn_conv)

__all__ = ["ResidualUp", "RegionGenerator", "RegionGenerators", "generator_widths"]


def generator_widths(image_size: int, nf: int) -> list:
    """Channels at 4 x 4, 8 x 8, ..., image_size: ``nf * min(16, image_size // r)``.

    At 128 this is the official 16nf, 16nf, 8nf, 4nf, 2nf, nf; smaller images drop the
    first (coarsest) blocks, so the last block always has nf channels at full resolution.
    """
    n_up = int(math.log2(image_size // 4))
    return [nf * min(16, image_size // (4 * 2**i)) for i in range(n_up + 1)]


class ResidualUp(nn.Module):
    """One up-block at resolution r -> 2r::

        main:     CIN(z) - ReLU - [concat mask at r] - up x2 - conv3x3 - CIN(z) - ReLU - conv3x3
        shortcut: up x2 - conv1x1
    """

    def __init__(self, in_channels: int, out_channels: int, nz: int, *, use_sn: bool = True) -> None:
        super().__init__()
        self.norm_a = ConditionalInstanceNorm(in_channels, nz)
        self.conv_a = sn_conv(in_channels + 1, out_channels, 3, bias=False, use_sn=use_sn)
        self.norm_b = ConditionalInstanceNorm(out_channels, nz)
        self.conv_b = sn_conv(out_channels, out_channels, 3, bias=True, use_sn=use_sn)
        self.shortcut = sn_conv(in_channels, out_channels, 1, bias=True, use_sn=use_sn)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # The mask, average-pooled to x's resolution, is one more input channel.
        small_mask = F.avg_pool2d(mask, mask.shape[-1] // x.shape[-1])
        h = torch.cat([F.relu(self.norm_a(x, z)), small_mask], dim=1)
        h = self.conv_a(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.conv_b(F.relu(self.norm_b(h, z)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class RegionGenerator(nn.Module):
    r"""One G_k: :math:`G_k(M_k, z_k) = M_k \odot V_k`, where :math:`V_k` is the network's tanh
    output (the region's new appearance); the mask is applied here, once.

    Shapes: mask (B, 1, H, W), z (B, nz) -> (B, 3, H, W), zero where the mask is 0.
    """

    def __init__(self, image_size: int = 128, nz: int = 32, nf: int = 64,
                 self_attention: bool = False, *, use_sn: bool = True, out_channels: int = 3) -> None:
        super().__init__()
        widths = generator_widths(image_size, nf)
        self.nz = nz
        self.dense = nn.Linear(nz, widths[0] * 4 * 4)
        self.blocks = nn.ModuleList(
            ResidualUp(c_in, c_out, nz, use_sn=use_sn) for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        # Self-attention on the 2nf features at half resolution, before the last up-block.
        self.attention = SelfAttention(widths[-2], use_sn=use_sn) if self_attention else None
        self.norm_out = ConditionalInstanceNorm(nf, nz)
        self.conv_out = sn_conv(nf + 1, out_channels, 3, bias=True, use_sn=use_sn)
        own_power_iterations(self)
        self.power_iteration_outside = False  # True inside RegionGenerators, which runs them

    def forward(self, mask: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.training and not self.power_iteration_outside:
            power_iterations(self)  # outside torch.compile's graph (redo_lib.layers.SpectralNormConv2d)
        x = self.dense(z).view(z.shape[0], -1, 4, 4)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if i == last and self.attention is not None:
                x = self.attention(x)
            x = block(x, mask, z)
        x = self.conv_out(torch.cat([F.relu(self.norm_out(x, z)), mask], dim=1))
        return torch.tanh(x) * mask


class RegionGenerators(nn.Module):
    """The K independent generators G_1..G_K (official ``netGenX``).

    ``forward(masks, z)``: masks (B, K, H, W), z (B, K, nz) -> (B, K, 3, H, W), where
    ``out[:, k] = G_k(masks[:, k], z[:, k])``. ``regions`` restricts the computation to
    some generators (the preprint's one-region-per-step variant); the others are zeros.
    """

    def __init__(self, image_size: int = 128, n_regions: int = 2, nz: int = 32, nf: int = 64,
                 self_attention: bool = False, *, use_sn: bool = True) -> None:
        super().__init__()
        self.n_regions = n_regions
        self.nz = nz
        self.generators = nn.ModuleList(
            RegionGenerator(image_size, nz, nf, self_attention, use_sn=use_sn) for _ in range(n_regions)
        )
        own_power_iterations(self)  # the power iterations of the generators that run, at the start

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "RegionGenerators":
        net = cls(cfg.image_size, cfg.n_regions, cfg.nz, cfg.nf_gen, cfg.self_attention_gen,
                  use_sn=cfg.spectral_norm)
        init_orthogonal(net, cfg.init_gain)
        return net

    def forward(self, masks: torch.Tensor, z: torch.Tensor,
                regions: Optional[Sequence[int]] = None) -> torch.Tensor:
        if masks.shape[1] != self.n_regions or z.shape[1] != self.n_regions:
            raise ValueError(
                f"expected {self.n_regions} regions, got masks {tuple(masks.shape)} and z {tuple(z.shape)}"
            )
        wanted = range(self.n_regions) if regions is None else set(regions)
        if self.training:  # outside torch.compile's graph (redo_lib.layers.SpectralNormConv2d)
            power_iterations(*(g for k, g in enumerate(self.generators) if k in wanted))
        outputs = []
        for k, g in enumerate(self.generators):
            if k in wanted:
                outputs.append(g(masks[:, k : k + 1], z[:, k]))
            else:
                outputs.append(masks.new_zeros(masks.shape[0], 3, *masks.shape[-2:]))
        return torch.stack(outputs, dim=1)
