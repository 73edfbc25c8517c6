"""GPU numerics, checked on the CPU: spectral norm's power iteration stays in float32 under
autocast, and self-attention hands scaled_dot_product_attention stride-1 q, k, v.

- ``torch.mv`` is on autocast's low-precision list (CUDA: float16 / bfloat16; CPU: bfloat16):
  a power iteration under autocast would estimate sigma from rounded products. CPU autocast
  runs the same dispatch, so a dispatch mode that records each product's dtype and the
  autocast state when it ran shows what CUDA would do.
- CUDA's fused attention kernels need the last dimension of q, k and v at stride 1;
  otherwise PyTorch takes its math path and stores the N x N/4 attention matrix. Checked on
  the attention layers of the Flowers networks at their real shapes (found on the meta
  device, without building 93 M parameters), outputs equal to the unfused formula.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from redo_lib import get_preset
from redo_lib.discriminator import Discriminator
from redo_lib.generator import RegionGenerator
from redo_lib.layers import SelfAttention, SpectralNormConv2d
from tests.test_attention import reference_attention

PRODUCTS = {torch.ops.aten.mv.default, torch.ops.aten.dot.default, torch.ops.aten.vdot.default,
            torch.ops.aten.addmv.default, torch.ops.aten.mm.default}


class RecordProducts(TorchDispatchMode):
    """Records (op, input dtypes, autocast enabled) for matrix-vector products and convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.products, self.conv_dtypes = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS:
            dtypes = tuple(a.dtype for a in args if isinstance(a, torch.Tensor))
            self.products.append((func.__name__, dtypes, torch.is_autocast_enabled("cpu")))
        elif func is torch.ops.aten.convolution.default:
            self.conv_dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


def test_power_iteration_and_sigma_run_in_float32_under_autocast():
    torch.manual_seed(0)
    d = Discriminator(32, nf=4).train()
    n_layers = sum(isinstance(m, SpectralNormConv2d) for m in d.modules())
    u_before = d.blocks[0].conv1.parametrizations.weight[0]._u.clone()
    with RecordProducts() as record, torch.autocast("cpu", dtype=torch.bfloat16):
        d(torch.randn(2, 3, 32, 32))
    # one power iteration (2 mv) and sigma (mv + dot) per layer
    assert len(record.products) >= 4 * n_layers, record.products
    low = [p for p in record.products if p[2] or any(t != torch.float32 for t in p[1])]
    assert not low, f"{len(low)} of {len(record.products)} products ran under autocast: {low[:4]}"
    assert torch.bfloat16 in record.conv_dtypes  # autocast was on for the convolutions
    assert not torch.equal(u_before, d.blocks[0].conv1.parametrizations.weight[0]._u)  # u did move


def _attention_inputs():
    """(name, input shape) of every SelfAttention of the Flowers networks, batch 1."""
    m = get_preset("flowers").model
    shapes = []
    with torch.device("meta"):
        d = Discriminator(m.image_size, m.nf_disc, m.self_attention_disc)
        g = RegionGenerator(m.image_size, m.nz, m.nf_gen, m.self_attention_gen)
        for name, net in (("D", d), ("G_k", g)):
            for module in net.modules():
                if isinstance(module, SelfAttention):
                    module.register_forward_hook(
                        lambda mod, args, out, name=name: shapes.append((name, tuple(args[0].shape))))
        with torch.no_grad():
            d(torch.empty(1, 3, m.image_size, m.image_size))
            g(torch.empty(1, 1, m.image_size, m.image_size), torch.empty(1, m.nz))
    return shapes


def test_flowers_attention_gets_stride_one_q_k_v_and_the_same_output():
    shapes = _attention_inputs()
    assert [name for name, _ in shapes] == ["D", "G_k"], shapes
    seen = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is F.scaled_dot_product_attention:
                seen.append([t.stride(-1) for t in args[:3]])
            return func(*args, **(kwargs or {}))

    for name, shape in shapes:
        torch.manual_seed(0)
        layer = SelfAttention(shape[1]).eval()  # eval: the same u, v in both passes
        with torch.no_grad():
            layer.gamma.fill_(0.7)  # 0 at initialisation would hide the attention branch
            x = torch.randn(shape)
            seen.clear()
            with Spy():
                y = layer(x)
            assert seen == [[1, 1, 1]], f"{name} attention at {shape}: last-dimension strides {seen}"
            torch.testing.assert_close(y, reference_attention(layer, x), rtol=1e-4, atol=1e-5)
