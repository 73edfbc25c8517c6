"""The ReDO container: the four networks of one model, built from a :class:`ModelConfig`."""
from __future__ import annotations

from torch import nn

from .config import ModelConfig
from .discriminator import Discriminator, InformationNetwork
from .generator import RegionGenerators
from .mask_network import MaskNetwork

__all__ = ["ReDO", "count_parameters"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (spectral norm's u and v are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())


class ReDO(nn.Module):
    """F, the K generators G_k, D and delta (paper section 3, Fig. 2).

    Call conventions:

    - ``mask_net(x)``: images (B, 3, H, W) -> soft masks (B, K, H, W), summing to 1 over K;
    - ``generator(masks, z)``: z (B, K, nz) -> (B, K, 3, H, W), region k already x M_k;
    - ``discriminator(x)``: (B, 3, H, W) -> (B, 1);
    - ``info_net(x)``: (B, 3, H, W) -> (B, K, nz).

    See :mod:`redo_lib.generative` for how they are combined.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = (config or ModelConfig()).validate()
        self.mask_net = MaskNetwork.from_config(self.config)
        self.generator = RegionGenerators.from_config(self.config)
        self.discriminator = Discriminator.from_config(self.config)
        self.info_net = InformationNetwork.from_config(self.config)

    @property
    def n_regions(self) -> int:
        return self.config.n_regions

    @property
    def nz(self) -> int:
        return self.config.nz

    def parameter_counts(self) -> dict:
        return {name: count_parameters(getattr(self, name))
                for name in ("mask_net", "generator", "discriminator", "info_net")}
