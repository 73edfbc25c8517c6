"""Building blocks shared by the four networks.

- :func:`sn_conv` / :func:`sn_linear`: layers with optional spectral normalisation
  (Miyato et al. 2018), using :func:`torch.nn.utils.parametrizations.spectral_norm`;
  :class:`SpectralNormConv2d` divides the smaller of weight and output by sigma.
- :func:`init_orthogonal`: the official initialisation (orthogonal, gain 0.8), applied to
  the *underlying* weight of spectrally normalised layers (as in the official code).
- :class:`ConditionalInstanceNorm`: instance norm whose scale and shift are functions of z.
- :class:`SelfAttention`: SAGAN self-attention with 2 x 2 max-pooled keys and values.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = [
    "sn_conv",
    "SpectralNormConv2d",
    "sn_linear",
    "init_orthogonal",
    "ConditionalInstanceNorm",
    "SelfAttention",
]


def sn_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    bias: bool = True,
    use_sn: bool = True,
) -> nn.Module:
    """A stride-1, 'same'-padded convolution, spectrally normalised when ``use_sn``."""
    if use_sn:
        return SpectralNormConv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias)


class SpectralNormConv2d(nn.Conv2d):
    """A spectrally normalised convolution, ``conv(x, W / sigma(W)) + b`` (Miyato et al. 2018).

    The normalisation is torch's own parametrisation (same parameters, buffers ``_u`` /
    ``_v`` and state-dict keys as ``spectral_norm(nn.Conv2d(...))``: converted official
    weights and saved checkpoints load unchanged). What changes is where sigma divides:
    a convolution is linear in its weight, so

        conv(x, W / sigma) + b  ==  conv(x, W) / sigma + b,

    and the layer divides whichever of the two is smaller. Deep in D and G the weights are
    1024 x 1024 x 3 x 3 (9.4 M numbers) while the outputs are a batch of 4 x 4 or 8 x 8 maps:
    dividing the weight (and, backwards, the weight-sized terms of the quotient rule) costs
    more there than the convolution itself on a CPU. The power iteration, sigma and every
    gradient are those of the parametrisation (equal up to float rounding; tested in
    float64).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parametrization = self.parametrizations.weight
        weight = parametrization.original
        n_out = x.shape[0] * self.out_channels * x.shape[-2] * x.shape[-1]  # stride 1, 'same' padding
        if n_out >= weight.numel():
            return super().forward(x)  # self.weight: the parametrisation's W / sigma
        sigma = _spectral_sigma(parametrization[0], weight)
        out = self._conv_forward(x, weight, None) / sigma
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


def _spectral_sigma(sn: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """sigma(W) exactly as ``torch.nn.utils.parametrizations._SpectralNorm.forward`` computes it.

    In training mode one power iteration first updates the buffers ``_u`` and ``_v`` (no
    gradient); sigma = u^T W v then carries the gradient to W through u v^T only, as in the
    parametrisation.
    """
    weight_mat = sn._reshape_weight_to_matrix(weight)
    if sn.training:
        sn._power_method(weight_mat, sn.n_power_iterations)
    u = sn._u.clone(memory_format=torch.contiguous_format)
    v = sn._v.clone(memory_format=torch.contiguous_format)
    return torch.vdot(u, torch.mv(weight_mat, v))


def sn_linear(in_features: int, out_features: int, *, use_sn: bool = True) -> nn.Module:
    layer = nn.Linear(in_features, out_features)
    return spectral_norm(layer) if use_sn else layer


def init_orthogonal(module: nn.Module, gain: float = 0.8) -> None:
    """Orthogonal initialisation of every Conv2d / Linear weight (official ``weights_init_ortho``).

    With the parametrisation API the trainable tensor is
    ``parametrizations.weight.original``; initialising ``weight`` itself would only write
    into a temporary. Spectral norm divides by the largest singular value afterwards, so the
    gain only matters for the layers without it (F, the dense and gamma/beta layers).
    Biases keep PyTorch's default initialisation, as in the official code.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
                with torch.no_grad():
                    nn.init.orthogonal_(m.parametrizations.weight.original, gain)
                _refresh_spectral_norm(m)
            else:
                with torch.no_grad():
                    nn.init.orthogonal_(m.weight, gain)


def _refresh_spectral_norm(layer: nn.Module, n_iterations: int = 15) -> None:
    """Re-estimate spectral norm's singular vectors u, v for a re-initialised weight.

    The parametrisation runs 15 power iterations when it is created; a weight written
    afterwards leaves u and v pointing at the old one, and an eval-mode forward (which
    uses u and v as they are) would then divide by a far too small sigma. Each access to
    ``layer.weight`` in training mode runs one power iteration.
    """
    sn = layer.parametrizations.weight[0]
    was_training = sn.training
    sn.train()
    with torch.no_grad():
        for _ in range(n_iterations):
            layer.weight
    sn.train(was_training)


class ConditionalInstanceNorm(nn.Module):
    r"""Instance norm modulated by the latent code z (FiLM on instance-normalised features).

    .. math:: \mathrm{CIN}(x, z) = \gamma(z) \odot \frac{x - \mu(x)}{\sigma(x)} + \beta(z)

    :math:`\mu, \sigma` are per image and channel (instance norm without affine), and
    :math:`\gamma, \beta` are affine maps of z with bias. This is what the official code
    does, although the paper's text says *conditional batch norm*. There is no "1 +" in
    front of gamma: at initialisation the scale is close to 0 (as in the official code).
    """

    def __init__(self, num_features: int, nz: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.gamma = nn.Linear(nz, num_features)
        self.beta = nn.Linear(nz, num_features)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W), z: (B, nz) -> gamma, beta: (B, C, 1, 1)
        gamma = self.gamma(z)[:, :, None, None]
        beta = self.beta(z)[:, :, None, None]
        return self.norm(x) * gamma + beta


class SelfAttention(nn.Module):
    r"""SAGAN self-attention (Zhang et al. 2019) as in the official ReDO code.

    Queries :math:`f(x)` and keys :math:`g(x)` have C/8 channels, values :math:`h(x)` C/2;
    keys and values are max-pooled 2 x 2, so each of the N positions attends over N/4:

    .. math:: y = \gamma\, o\big(h(x)\, \mathrm{softmax}(g(x)^\top f(x))\big) + x

    with the scalar :math:`\gamma` initialised to 0 (the block starts as the identity).
    """

    def __init__(self, channels: int, *, use_sn: bool = True) -> None:
        super().__init__()
        hidden = max(channels // 8, 1)
        self.query = sn_conv(channels, hidden, 1, bias=False, use_sn=use_sn)
        self.key = sn_conv(channels, hidden, 1, bias=False, use_sn=use_sn)
        self.value = sn_conv(channels, channels // 2, 1, bias=False, use_sn=use_sn)
        self.out = sn_conv(channels // 2, channels, 1, bias=False, use_sn=use_sn)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # scaled_dot_product_attention's layout: (B, heads = 1, positions, channels); the 4-D
        # form lets CUDA pick its fused kernels.
        q = self.query(x).flatten(2).transpose(1, 2)[:, None]  # (B, 1, N, C/8): a query per position
        k = F.max_pool2d(self.key(x), 2).flatten(2).transpose(1, 2)[:, None]  # (B, 1, N/4, C/8)
        v = F.max_pool2d(self.value(x), 2).flatten(2).transpose(1, 2)[:, None]  # (B, 1, N/4, C/2)
        # Scores q k^T: (B, 1, N, N/4); the softmax runs over the last axis, the N/4 pooled key
        # positions, so each query's weights sum to 1 over the keys (the official code's
        # softmax over dim 1 of its (B, N/4, N) matrix). scale=1: no 1/sqrt(d) factor, as in SAGAN.
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, 1, N, C/2)
        # back to (B, C/2, H, W), contiguous: the transposed view has channels-last strides, and
        # every convolution after it (here and in the following blocks) would then run in
        # channels-last and convert its weight at every call
        o = o[:, 0].transpose(1, 2).reshape(b, c // 2, h, w).contiguous()
        return self.gamma * self.out(o) + x
