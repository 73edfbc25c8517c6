"""Building blocks shared by the four networks.

- :func:`sn_conv` / :func:`sn_linear`: layers with optional spectral normalisation
  (Miyato et al. 2018), using :func:`torch.nn.utils.parametrizations.spectral_norm`;
  :class:`SpectralNormConv2d` divides the smaller of weight and output by sigma, and runs
  its power iteration in float32 outside ``torch.compile``'s graphs
  (:func:`power_iterations`, :func:`own_power_iterations`: a network runs those of all its
  layers at the start of its forward).
- :func:`init_orthogonal`: the official initialisation (orthogonal, gain 0.8), applied to
  the *underlying* weight of spectrally normalised layers (as in the official code).
- :class:`ConditionalInstanceNorm`: instance norm whose scale and shift are functions of z.
- :class:`SelfAttention`: SAGAN self-attention with 2 x 2 max-pooled keys and values
  (q, k, v contiguous for CUDA's fused attention kernels).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = [
    "sn_conv",
    "SpectralNormConv2d",
    "power_iterations",
    "own_power_iterations",
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

    The normalisation is that of torch's parametrisation (same parameters, buffers ``_u`` /
    ``_v`` and state-dict keys as ``spectral_norm(nn.Conv2d(...))``: converted official
    weights and saved checkpoints load unchanged). Two things differ in *how* it runs:

    1. **Where sigma divides.** A convolution is linear in its weight, so

           conv(x, W / sigma) + b  ==  conv(x, W) / sigma + b,

       and the layer divides whichever of the two is smaller. Deep in D and G the weights are
       1024 x 1024 x 3 x 3 (9.4 M numbers) while the outputs are a batch of 4 x 4 or 8 x 8
       maps: dividing the weight (and, backwards, the weight-sized terms of the quotient
       rule) costs more there than the convolution itself on a CPU.
    2. **The power iteration runs outside the graph.** In training mode one power iteration
       updates ``_u`` and ``_v`` in place (no gradient) before the convolution, in the
       weight's dtype with autocast off (float32 under mixed precision: ``torch.mv`` is on
       autocast's float16 / bfloat16 list), and outside ``torch.compile``'s graphs
       (:func:`power_iterations`). The graph gets only sigma = u^T W v from copies of u and v
       (``_u_now`` / ``_v_now``, non-persistent buffers: not in the state dict) that no later
       power iteration writes to: D is called on reals and on fakes before one backward, and
       a graph that saved the buffers themselves for its backward would find them modified
       in place (inductor's error at the first D step). As in torch's parametrisation, the
       gradient reaches W through sigma with u and v held constant.

    Inside a network (:func:`own_power_iterations`) the network runs the power iterations of
    all its layers once at the start of its forward, so that a compiled network is one graph;
    a layer on its own runs its own. The power iteration, sigma and every gradient are those
    of the parametrisation (equal up to float rounding; tested in float64).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        spectral_norm(self)
        sn = self.parametrizations.weight[0]
        self.register_buffer("_u_now", sn._u.clone(), persistent=False)
        self.register_buffer("_v_now", sn._v.clone(), persistent=False)
        # True when an enclosing network runs this layer's power iteration (own_power_iterations)
        self.power_iteration_outside = False

    def power_iteration(self) -> None:
        """One power iteration of torch's ``_SpectralNorm._power_method`` (in place on ``_u``,
        ``_v``), then fresh copies for the next forward. No gradient, autocast off."""
        sn = self.parametrizations.weight[0]
        weight = self.parametrizations.weight.original
        with torch.no_grad(), _autocast_off(weight.device.type):
            weight_mat = sn._reshape_weight_to_matrix(weight)
            for _ in range(sn.n_power_iterations):
                F.normalize(torch.mv(weight_mat, sn._v), dim=0, eps=sn.eps, out=sn._u)
                F.normalize(torch.mv(weight_mat.H, sn._u), dim=0, eps=sn.eps, out=sn._v)
            self._u_now = sn._u.clone(memory_format=torch.contiguous_format)
            self._v_now = sn._v.clone(memory_format=torch.contiguous_format)

    def sigma(self) -> torch.Tensor:
        """sigma = u^T W v, differentiable in W (u, v constants), in the weight's dtype."""
        sn = self.parametrizations.weight[0]
        weight = self.parametrizations.weight.original
        if self.training:
            u, v = self._u_now, self._v_now
        else:  # eval: u and v as they are (as loaded), never updated
            u = sn._u.clone(memory_format=torch.contiguous_format)
            v = sn._v.clone(memory_format=torch.contiguous_format)
        with _autocast_off(weight.device.type):
            return torch.vdot(u, torch.mv(sn._reshape_weight_to_matrix(weight), v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self.power_iteration_outside:
            power_iterations(self)
        weight = self.parametrizations.weight.original
        sigma = self.sigma()
        n_out = x.shape[0] * self.out_channels * x.shape[-2] * x.shape[-1]  # stride 1, 'same' padding
        if n_out >= weight.numel():
            return self._conv_forward(x, weight / sigma, self.bias)  # the parametrisation's W / sigma
        out = self._conv_forward(x, weight, None) / sigma
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


def _autocast_off(device_type: str):
    """Autocast disabled on ``device_type`` (nothing to disable where autocast does not exist)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


@torch.compiler.disable
def power_iterations(*modules: nn.Module) -> None:
    """One spectral-norm power iteration for every :class:`SpectralNormConv2d` in ``modules``
    that is in training mode. Runs eagerly, never inside a ``torch.compile`` graph."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, SpectralNormConv2d) and m.training:
                m.power_iteration()


def own_power_iterations(network: nn.Module) -> None:
    """Hand the power iterations of ``network``'s layers to ``network``: its forward must call
    :func:`power_iterations` on them (once, before using them) in training mode.

    Equivalent to each layer running its own, since a power iteration depends only on its
    layer's weight, which does not change during a forward; but a compiled network then
    breaks its graph once, at the start, not at every layer. A layer of such a network called
    on its own in training mode uses the last iteration's u and v.
    """
    for m in network.modules():
        if m is not network and hasattr(m, "power_iteration_outside"):
            m.power_iteration_outside = True  # its layers, and sub-networks that would run their own


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
        if isinstance(layer, SpectralNormConv2d):
            layer._u_now, layer._v_now = sn._u.clone(), sn._v.clone()
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
        # scaled_dot_product_attention's layout: (B, heads = 1, positions, channels), each made
        # contiguous: CUDA's fused kernels need the last dimension's stride to be 1 (the
        # transposed views have stride N or N/4 there, and the math path would store the whole
        # N x N/4 matrix).
        q = _positions_major(self.query(x))  # (B, 1, N, C/8): a query per position
        k = _positions_major(F.max_pool2d(self.key(x), 2))  # (B, 1, N/4, C/8)
        v = _positions_major(F.max_pool2d(self.value(x), 2))  # (B, 1, N/4, C/2)
        # Scores q k^T: (B, 1, N, N/4); the softmax runs over the last axis, the N/4 pooled key
        # positions, so each query's weights sum to 1 over the keys (the official code's
        # softmax over dim 1 of its (B, N/4, N) matrix). scale=1: no 1/sqrt(d) factor, as in SAGAN.
        o = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, 1, N, C/2)
        # back to (B, C/2, H, W), contiguous: the transposed view has channels-last strides, and
        # every convolution after it (here and in the following blocks) would then run in
        # channels-last and convert its weight at every call
        o = o[:, 0].transpose(1, 2).reshape(b, c // 2, h, w).contiguous()
        return self.gamma * self.out(o) + x


def _positions_major(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H * W, C), contiguous (channels last-dimension, stride 1)."""
    return features.flatten(2).transpose(1, 2).contiguous()[:, None]
