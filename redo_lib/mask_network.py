"""The mask network F (official ``_netEncM``): image -> K soft masks.

A CycleGAN-style encoder-decoder (Zhu et al. 2017) with a pyramid pooling module
(PSPNet, Zhao et al. 2017) between them. No spectral normalisation.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import init_orthogonal

__all__ = ["MaskNetwork", "PyramidPooling", "ResidualBlock"]


class ResidualBlock(nn.Module):
    """conv3x3 - IN - ReLU - conv3x3, plus the input, then IN - ReLU after the sum."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=True)
        self.norm_out = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.norm1(self.conv1(x))))
        return F.relu(self.norm_out(h + x))


class PyramidPooling(nn.Module):
    """Pyramid pooling: global context at 1x1, 2x2, 3x3 and 6x6, one channel per level.

    Each branch average-pools the s x s features, maps them to 1 channel with a 1x1 conv
    and upsamples bilinearly back to s x s; the branches are concatenated to the input
    (C -> C + 4 channels).

    ``mode="official"`` pools with kernel = stride = s // n (the official layer; at 128 x 128,
    s = 32, the 3x3 and 6x6 levels ignore the last 2 rows and columns). At smaller sizes that
    rule no longer gives n x n bins (at s = 8 the "6 x 6" level pools 1 x 1 windows), so
    ``mode="adaptive"`` uses PSPNet's adaptive average pooling to exactly n x n bins.
    """

    def __init__(self, channels: int, feature_size: int, bins: Sequence[int] = (1, 2, 3, 6),
                 mode: str = "official") -> None:
        super().__init__()
        if mode not in ("official", "adaptive"):
            raise ValueError(f"mode={mode!r}: choose 'official' or 'adaptive'")
        self.bins = tuple(bins)
        self.feature_size = feature_size
        self.mode = mode
        self.convs = nn.ModuleList(nn.Conv2d(channels, 1, 1) for _ in self.bins)

    def _pool(self, x: torch.Tensor, n: int) -> torch.Tensor:
        if self.mode == "adaptive":
            return F.adaptive_avg_pool2d(x, n)
        k = max(self.feature_size // n, 1)
        return F.avg_pool2d(x, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        levels = [
            F.interpolate(conv(self._pool(x, n)), size=size, mode="bilinear", align_corners=False)
            for n, conv in zip(self.bins, self.convs)
        ]
        return torch.cat([x, *levels], dim=1)


class MaskNetwork(nn.Module):
    r"""F: an image (B, 3, H, W) in [-1, 1] -> K soft masks (B, K, H, W) summing to 1 over K.

    Eq. (1) of the paper, step *composition*: :math:`M = F(I)`. For K = 2 the network
    predicts one logit map and :math:`M_0 = \sigma(\ell / T)`, :math:`M_1 = 1 - M_0`;
    for K > 2, :math:`M = \mathrm{softmax}_k(\ell_k / T)`.
    """

    def __init__(self, image_size: int = 128, n_regions: int = 2, nf: int = 64, n_res: int = 3,
                 temperature: float = 1.0, pyramid_pooling: str = "official",
                 in_channels: int = 3) -> None:
        super().__init__()
        self.n_regions = n_regions
        self.temperature = temperature
        # Down: 7x7 conv, then two stride-2 convs: (3, H, W) -> (nf, H/4, W/4).
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, nf // 4, 7, bias=False),
            nn.InstanceNorm2d(nf // 4, affine=True),
            nn.ReLU(),
            nn.Conv2d(nf // 4, nf // 2, 3, 2, 1, bias=False),
            nn.InstanceNorm2d(nf // 2, affine=True),
            nn.ReLU(),
            nn.Conv2d(nf // 2, nf, 3, 2, 1, bias=False),
            nn.InstanceNorm2d(nf, affine=True),
            nn.ReLU(),
        )
        self.residual = nn.Sequential(*[ResidualBlock(nf) for _ in range(n_res)])
        self.pyramid = PyramidPooling(nf, image_size // 4, mode=pyramid_pooling)
        c = nf + len(self.pyramid.bins)
        # Up: two nearest x2 upsamplings back to H x W, then a 7x7 conv to the logits.
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c, c // 2, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(c // 2, affine=True),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c // 2, c // 4, 3, 1, 1, bias=False),
            nn.InstanceNorm2d(c // 4, affine=True),
            nn.ReLU(),
            nn.ReflectionPad2d(3),
            nn.Conv2d(c // 4, 1 if n_regions == 2 else n_regions, 7, bias=True),
        )

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "MaskNetwork":
        net = cls(cfg.image_size, cfg.n_regions, cfg.nf_mask, cfg.n_res_mask, cfg.temperature,
                  cfg.pyramid_pooling)
        init_orthogonal(net, cfg.init_gain)
        return net

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-activation maps: (B, 1, H, W) for K = 2, (B, K, H, W) otherwise."""
        return self.decoder(self.pyramid(self.residual(self.encoder(images))))

    def masks_from_logits(self, logits: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        t = self.temperature if temperature is None else temperature
        if self.n_regions == 2:
            m = torch.sigmoid(logits / t)
            return torch.cat([m, 1 - m], dim=1)
        return torch.softmax(logits / t, dim=1)

    def forward(self, images: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        return self.masks_from_logits(self.logits(images), temperature)
