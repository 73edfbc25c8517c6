"""Which networks each objective trains (spec section 3)."""
import torch

from redo_lib import ReDO
from redo_lib.generative import redraw
from redo_lib.losses import discriminator_hinge_loss, generator_adversarial_loss, information_loss
from tests.conftest import tiny_config


def grads(module):
    return [p.grad for p in module.parameters()]


def has_grad(module):
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


def test_generator_side_backward_reaches_f_g_delta_and_not_d():
    model = ReDO(tiny_config(32, 2, self_attention_gen=True))
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    out = redraw(model, x)
    d = model.discriminator
    d.requires_grad_(False)  # the generator step does not train D
    loss = generator_adversarial_loss(d(out.fakes)) + 5 * information_loss(model.info_net(out.full), out.z)
    loss.backward()
    assert has_grad(model.mask_net)
    for g in model.generator.generators:
        assert has_grad(g)
    assert has_grad(model.info_net)
    assert all(g is None for g in grads(d))


def test_discriminator_backward_reaches_only_d():
    model = ReDO(tiny_config(32, 2))
    x, real = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        fakes = redraw(model, x).fakes
    loss = discriminator_hinge_loss(model.discriminator(real), model.discriminator(fakes))
    loss.backward()
    assert has_grad(model.discriminator)
    for net in (model.mask_net, model.generator, model.info_net):
        assert all(g is None for g in grads(net))


def test_one_region_variant_trains_only_the_sampled_generator():
    model = ReDO(tiny_config(32, 3))
    x = torch.rand(2, 3, 32, 32)
    out = redraw(model, x, regions=[2])
    generator_adversarial_loss(model.discriminator(out.fakes)).backward()
    assert not has_grad(model.generator.generators[0])
    assert not has_grad(model.generator.generators[1])
    assert has_grad(model.generator.generators[2])
