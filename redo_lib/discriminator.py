"""The discriminator D (official ``_resDiscriminator128``) and the information network
delta (official ``_netRecZ``), which share one residual encoder.

Channel counts double in every down-block after the first, as the official code does;
the paper's Table 4 under-states them (correction 4 of the reproducibility study).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import SelfAttention, init_orthogonal, own_power_iterations, power_iterations, sn_conv

__all__ = ["ResidualDown", "ResidualEncoder", "Discriminator", "InformationNetwork"]


class ResidualDown(nn.Module):
    """A residual block of D / delta.

    - ``first``: conv3x3 - ReLU - conv3x3 - avgpool; shortcut avgpool - conv1x1 (on raw pixels,
      so no ReLU in front);
    - otherwise: ReLU - conv3x3 - ReLU - conv3x3 - avgpool; shortcut avgpool - conv1x1;
    - ``downsample=False`` (the last block, at 4 x 4): no pooling, identity shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, *, first: bool = False,
                 downsample: bool = True, use_sn: bool = True) -> None:
        super().__init__()
        self.first = first
        self.downsample = downsample
        self.conv1 = sn_conv(in_channels, out_channels, 3, use_sn=use_sn)
        self.conv2 = sn_conv(out_channels, out_channels, 3, use_sn=use_sn)
        if downsample:
            self.shortcut = sn_conv(in_channels, out_channels, 1, use_sn=use_sn)
        elif in_channels == out_channels:
            self.shortcut = None
        else:
            raise ValueError("a block without downsampling keeps its channel count")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if not self.downsample:
            return h + x
        return F.avg_pool2d(h, 2) + self.shortcut(F.avg_pool2d(x, 2))


class ResidualEncoder(nn.Module):
    """image (B, 3, S, S) -> features (B, C) summed over the final 4 x 4 positions.

    The first block halves the resolution with nf channels, optional self-attention follows,
    then down-blocks double the channels until 4 x 4 (at 128: nf -> 16nf), and a last block
    without pooling. The features are summed over space (no ReLU before the sum).
    """

    def __init__(self, image_size: int = 128, nf: int = 64, self_attention: bool = False,
                 *, use_sn: bool = True, in_channels: int = 3) -> None:
        super().__init__()
        n_down = int(math.log2(image_size // 8))  # S/2 -> 4
        widths = [nf * 2**i for i in range(n_down + 1)]
        blocks = [ResidualDown(in_channels, nf, first=True, use_sn=use_sn)]
        blocks += [ResidualDown(a, b, use_sn=use_sn) for a, b in zip(widths[:-1], widths[1:])]
        blocks.append(ResidualDown(widths[-1], widths[-1], downsample=False, use_sn=use_sn))
        self.blocks = nn.ModuleList(blocks)
        self.attention = SelfAttention(nf, use_sn=use_sn) if self_attention else None
        self.out_features = widths[-1]
        own_power_iterations(self)  # one power iteration per layer, all at the start of forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            power_iterations(self)  # outside torch.compile's graph (redo_lib.layers.SpectralNormConv2d)
        return self.features(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder without the power iterations (the caller's forward runs them first: one
        graph break, at the top of the outermost forward, when compiled)."""
        x = self.blocks[0](x)
        if self.attention is not None:
            x = self.attention(x)
        for block in self.blocks[1:]:
            x = block(x)
        return x.sum(dim=(2, 3))


class Discriminator(ResidualEncoder):
    """D: image (B, 3, S, S) -> realness score (B, 1), trained with the hinge loss."""

    def __init__(self, image_size: int = 128, nf: int = 64, self_attention: bool = False,
                 *, use_sn: bool = True) -> None:
        super().__init__(image_size, nf, self_attention, use_sn=use_sn)
        self.linear = nn.Linear(self.out_features, 1)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "Discriminator":
        net = cls(cfg.image_size, cfg.nf_disc, cfg.self_attention_disc, use_sn=cfg.spectral_norm)
        init_orthogonal(net, cfg.init_gain)
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            power_iterations(self)
        return self.linear(self.features(x))


class InformationNetwork(ResidualEncoder):
    r"""delta: image (B, 3, S, S) -> predicted codes (B, K, nz).

    Its input is the *fully generated* image :math:`\sum_k G_k(M_k, z_k)` (as in the official ``train.py``),
    in which every region comes from its generator, so every :math:`z_k` is visible in it.
    """

    def __init__(self, image_size: int = 128, n_regions: int = 2, nz: int = 32, nf: int = 64,
                 *, use_sn: bool = True) -> None:
        super().__init__(image_size, nf, self_attention=False, use_sn=use_sn)
        self.n_regions = n_regions
        self.nz = nz
        self.linear = nn.Linear(self.out_features, n_regions * nz)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "InformationNetwork":
        net = cls(cfg.image_size, cfg.n_regions, cfg.nz, cfg.nf_info, use_sn=cfg.spectral_norm)
        init_orthogonal(net, cfg.init_gain)
        return net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            power_iterations(self)
        return self.linear(self.features(x)).view(x.shape[0], self.n_regions, self.nz)
