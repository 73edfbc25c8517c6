"""``torch.compile`` with its default backend (inductor) on a spectrally normalised network.

Inductor used to fail at the first D-step backward ("modified by an inplace operation"):
D is called on reals and then on fakes before one backward, and the compiled graph of the
first call had saved spectral norm's ``_u`` / ``_v`` buffers, which the second call's power
iteration updated in place. The power iteration now runs outside the graph
(:class:`redo_lib.layers.SpectralNormConv2d`). This test compiles the smallest network that
shows it, a D of width 1 at 32 x 32, with reals and fakes of one batch size (a second size
would compile a second, dynamic-shape graph: inductor generates and builds C++ kernels, and
the whole trainer's graphs take over ten minutes on two busy cores), and runs D steps as
the trainer does: the losses, gradients, weights and u / v equal eager mode's,
and nothing compiles again after the first step.
"""
from __future__ import annotations

import shutil
import time

import torch
import torch._inductor.config
from torch._dynamo.utils import counters

from redo_lib.discriminator import Discriminator
from redo_lib.layers import init_orthogonal
from redo_lib.losses import discriminator_hinge_loss

STEPS = 3


def _discriminator() -> Discriminator:
    torch.manual_seed(0)
    net = Discriminator(32, nf=1)
    init_orthogonal(net)
    return net.train()


def _d_steps(net: Discriminator, call, steps: int = STEPS):
    """``steps`` D updates (reals, then fakes, one backward, Adam); losses, and after each step the
    dynamo graph count."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    losses, graphs = [], []
    for _ in range(steps):
        reals = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
        fakes = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
        opt.zero_grad(set_to_none=True)
        loss = discriminator_hinge_loss(call(reals), call(fakes))
        loss.backward()
        opt.step()
        losses.append(loss.item())
        graphs.append(counters["stats"]["unique_graphs"])
    return losses, graphs


def test_inductor_d_steps_equal_eager_and_compile_once(fresh_dynamo):
    assert shutil.which("g++") or shutil.which("c++"), \
        "inductor on the CPU needs a C++ compiler: install g++ (apt-get install g++)"
    eager, compiled = _discriminator(), _discriminator()
    eager_losses, _ = _d_steps(eager, eager)
    start = time.perf_counter()
    # one compile thread: on two cores a pool of compile workers costs more than it saves
    with torch._inductor.config.patch(compile_threads=1):
        compiled_losses, graphs = _d_steps(compiled, torch.compile(compiled, backend="inductor"))
    print(f"inductor: {STEPS} D steps in {time.perf_counter() - start:.1f} s (compilation included); "
          f"graphs after each step: {graphs}; losses {compiled_losses} (eager {eager_losses})")
    torch.testing.assert_close(compiled_losses, eager_losses, rtol=1e-4, atol=1e-5)
    assert graphs[0] >= 1 and graphs[-1] == graphs[0], f"compiled again after the first step: {graphs}"
    state, reference = compiled.state_dict(), eager.state_dict()
    assert state.keys() == reference.keys()
    for name in reference:  # weights after the Adam steps, and spectral norm's u and v
        torch.testing.assert_close(state[name], reference[name], rtol=1e-4, atol=1e-5, msg=name)
