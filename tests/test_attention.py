"""SelfAttention through scaled_dot_product_attention equals the hand-built official formula.

The reference below restates the previous implementation (and the official code): the
(B, N/4, N) matrix g(x)^T f(x) with a softmax over its keys axis (dim 1), no 1/sqrt(d)
scale. Compared in float64, outputs and gradients (input and every parameter).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from redo_lib.layers import SelfAttention


def reference_attention(module: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The old hand-written formula, kept here only as the reference."""
    b, c, h, w = x.shape
    q = module.query(x).flatten(2)  # (B, C/8, N)
    k = F.max_pool2d(module.key(x), 2).flatten(2)  # (B, C/8, N/4)
    v = F.max_pool2d(module.value(x), 2).flatten(2)  # (B, C/2, N/4)
    attention = torch.softmax(k.transpose(1, 2) @ q, dim=1)  # (B, N/4, N), sums to 1 over keys
    o = (v @ attention).view(b, c // 2, h, w)
    return module.gamma * module.out(o) + x


SHAPES = [(2, 16, 8, 8), (3, 32, 6, 10), (1, 8, 4, 4)]


def _module(channels: int, use_sn: bool) -> SelfAttention:
    torch.manual_seed(0)
    module = SelfAttention(channels, use_sn=use_sn).double()
    with torch.no_grad():
        module.gamma.fill_(0.7)  # gamma = 0 at init would hide the attention branch
    # Spectral norm's power iteration updates u in training mode at every forward; in eval
    # mode the weight is a pure function of the parameters, so both passes see the same one.
    return module.eval() if use_sn else module.train()


def _grads(module: SelfAttention, x: torch.Tensor, fn, weight: torch.Tensor):
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = fn(x)
    (y * weight).sum().backward()
    named = {name: p.grad.clone() for name, p in module.named_parameters()}
    return y.detach(), x.grad.clone(), named


@pytest.mark.parametrize("use_sn", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_sdpa_attention_equals_reference(shape, use_sn):
    module = _module(shape[1], use_sn)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(shape, dtype=torch.float64, generator=generator)
    weight = torch.randn(shape, dtype=torch.float64, generator=generator)

    y_new, gx_new, gp_new = _grads(module, x, module, weight)
    y_ref, gx_ref, gp_ref = _grads(module, x, lambda t: reference_attention(module, t), weight)

    assert y_new.dtype == torch.float64
    torch.testing.assert_close(y_new, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx_new, gx_ref, rtol=1e-10, atol=1e-12)
    assert gp_new.keys() == gp_ref.keys()
    for name in gp_ref:
        torch.testing.assert_close(gp_new[name], gp_ref[name], rtol=1e-10, atol=1e-12, msg=name)
    # The attention branch really contributes (the comparison is not trivially y = x).
    assert (y_new - x).abs().max() > 1e-3


def test_softmax_is_over_keys():
    """Each output position is a convex combination of pooled values: the weights sum to 1 over keys."""
    module = _module(16, use_sn=False)
    with torch.no_grad():
        module.out.weight.copy_(torch.eye(16, 8, dtype=torch.float64)[:, :, None, None])
        module.value.weight.copy_(torch.eye(8, 16, dtype=torch.float64)[:, :, None, None])
        module.gamma.fill_(1.0)
    x = torch.ones(2, 16, 4, 4, dtype=torch.float64)
    # Constant values 1 everywhere: any weights summing to 1 over the keys give o = 1.
    y = module(x)
    torch.testing.assert_close(y[:, :8], torch.full_like(y[:, :8], 2.0))
    torch.testing.assert_close(y[:, 8:], x[:, 8:])


def test_attention_output_keeps_the_standard_layout():
    """The attention output is NCHW-contiguous like its input: a channels-last output would put
    every following convolution in channels-last, converting its weight at every call."""
    layer = SelfAttention(16)
    layer.gamma.data.fill_(0.5)
    x = torch.randn(2, 16, 8, 8)
    y = layer(x)
    assert y.is_contiguous()
    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    assert conv(y).is_contiguous()
