"""SpectralNormConv2d: torch's spectral-norm parametrisation, sigma dividing the smaller tensor."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from redo_lib.discriminator import Discriminator
from redo_lib.layers import SpectralNormConv2d, sn_conv


def _pair(in_channels: int, out_channels: int, kernel_size: int, bias: bool):
    """The layer and a reference ``spectral_norm(nn.Conv2d)`` in float64 with the same state."""
    torch.manual_seed(0)
    layer = SpectralNormConv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias).double()
    reference = spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size, 1, kernel_size // 2,
                                        bias=bias)).double()
    reference.load_state_dict(layer.state_dict())
    return layer, reference


def _output_is_divided(layer: SpectralNormConv2d, x: torch.Tensor) -> bool:
    return x.shape[0] * layer.out_channels * x.shape[-2] * x.shape[-1] < layer.parametrizations.weight.original.numel()


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 64, 2, 2), (3, 64, 16, 16)])  # the output, then the weight is divided
def test_forward_backward_and_power_iteration_equal_the_parametrisation(shape, bias):
    layer, reference = _pair(64, 48, 3, bias)
    x = torch.randn(*shape, dtype=torch.float64)
    expect_output_divided = shape[-1] == 2
    assert _output_is_divided(layer, x) == expect_output_divided
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    for _ in range(3):  # three calls: each uses u, v advanced by the one before
        ya, yb = layer(xa), reference(xb)
        torch.testing.assert_close(ya, yb, rtol=1e-10, atol=1e-12)
    grad = torch.randn_like(ya)
    ya.backward(grad)
    yb.backward(grad)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    pa, pb = dict(layer.named_parameters()), dict(reference.named_parameters())
    assert pa.keys() == pb.keys()
    for name in pa:
        torch.testing.assert_close(pa[name].grad, pb[name].grad, rtol=1e-10, atol=1e-12)
    persistent = {name: b for name, b in layer.state_dict().items() if name.endswith(("_u", "_v"))}
    assert persistent.keys() == {name for name, _ in reference.named_buffers()}
    for name, buffer in persistent.items():
        torch.testing.assert_close(buffer, dict(reference.named_buffers())[name], rtol=0, atol=0)


def test_eval_mode_leaves_u_and_v_alone_and_matches():
    layer, reference = _pair(64, 64, 3, True)
    layer.eval(), reference.eval()
    u = layer.parametrizations.weight[0]._u.clone()
    x = torch.randn(1, 64, 2, 2, dtype=torch.float64)
    assert _output_is_divided(layer, x)
    torch.testing.assert_close(layer(x), reference(x), rtol=1e-10, atol=1e-12)
    assert torch.equal(layer.parametrizations.weight[0]._u, u)


def test_sigma_divides_the_output_where_the_weight_is_larger():
    """At D's 4 x 4 stage the weight is never divided: no weight-sized division runs."""
    layer, _ = _pair(256, 256, 3, True)
    x = torch.randn(2, 256, 4, 4, dtype=torch.float64)
    seen = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in (torch.div, torch.Tensor.div, torch.Tensor.__truediv__):
                seen.append(tuple(args[0].shape))
            return func(*args, **(kwargs or {}))

    with Spy():
        layer(x)
    assert seen and tuple(layer.parametrizations.weight.original.shape) not in seen
    seen.clear()
    with Spy():
        layer(torch.randn(2, 256, 64, 64, dtype=torch.float64))
    assert tuple(layer.parametrizations.weight.original.shape) in seen  # large output: the weight is divided


def test_sn_conv_builds_it_and_state_dict_keys_are_torchs():
    layer = sn_conv(8, 16, 3)
    assert isinstance(layer, SpectralNormConv2d)
    reference = spectral_norm(nn.Conv2d(8, 16, 3, 1, 1))
    assert list(layer.state_dict()) == list(reference.state_dict())
    assert type(sn_conv(8, 16, 3, use_sn=False)) is nn.Conv2d
    x = torch.randn(1, 8, 5, 5)
    layer.eval()  # no power iteration between the two calls
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1), rtol=1e-5, atol=1e-6)


def test_a_network_running_its_layers_power_iterations_equals_each_layer_running_its_own():
    """D runs all its layers' power iterations at the start of its forward (one graph break when
    compiled); each layer on its own (tested against torch above) gives the same u, v, outputs
    and gradients over several training-mode calls."""
    torch.manual_seed(0)
    net = Discriminator(32, nf=4).double().train()
    per_layer = Discriminator(32, nf=4).double().train()
    per_layer.load_state_dict(net.state_dict())
    layers = [m for m in per_layer.modules() if isinstance(m, SpectralNormConv2d)]
    assert layers and all(m.power_iteration_outside for m in layers)
    for m in layers:
        m.power_iteration_outside = False
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    for _ in range(3):
        torch.testing.assert_close(net(x), _features(per_layer, x),
                                   rtol=1e-12, atol=1e-12)
    (net(x).sum() + net(-x).sum()).backward()
    (_features(per_layer, x).sum() + _features(per_layer, -x).sum()).backward()
    for (name, a), (_, b) in zip(net.named_parameters(), per_layer.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12, msg=name)
    for (name, a), (_, b) in zip(net.state_dict().items(), per_layer.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def _features(d: Discriminator, x: torch.Tensor) -> torch.Tensor:
    """D's forward without the network-level power iterations (each layer runs its own)."""
    return d.linear(d.features(x))
