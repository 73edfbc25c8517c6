"""Shapes, invariants and parameter counts of the four networks."""
import pytest
import torch

from redo_lib import ReDO, get_preset
from redo_lib.generator import generator_widths
from redo_lib.layers import ConditionalInstanceNorm, SelfAttention
from redo_lib.mask_network import PyramidPooling
from tests.conftest import tiny_config


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("k", [2, 3])
def test_shapes_and_mask_invariants(size, k):
    cfg = tiny_config(size, k, self_attention_gen=True, self_attention_disc=True)
    model = ReDO(cfg)
    x = torch.rand(2, 3, size, size) * 2 - 1
    masks = model.mask_net(x)
    assert masks.shape == (2, k, size, size)
    assert torch.allclose(masks.sum(1), torch.ones(2, size, size), atol=1e-6)
    assert (masks >= 0).all() and (masks <= 1).all()
    z = torch.randn(2, k, cfg.nz)
    out = model.generator(masks, z)
    assert out.shape == (2, k, 3, size, size)
    assert model.discriminator(x).shape == (2, 1)
    assert model.info_net(x).shape == (2, k, cfg.nz)


def test_generator_output_is_zero_outside_its_mask():
    cfg = tiny_config(32, 3)
    model = ReDO(cfg)
    masks = torch.zeros(2, 3, 32, 32)
    masks[:, 0, :16] = 1
    masks[:, 1, 16:, :10] = 1
    masks[:, 2] = 1 - masks[:, 0] - masks[:, 1]
    out = model.generator(masks, torch.randn(2, 3, cfg.nz))
    for k in range(3):
        outside = (masks[:, k] == 0).unsqueeze(1).expand(-1, 3, -1, -1)
        assert out[:, k][outside].abs().max() == 0
        inside = (masks[:, k] == 1).unsqueeze(1).expand(-1, 3, -1, -1)
        assert out[:, k][inside].abs().sum() > 0
    assert out.abs().max() <= 1


def test_generator_depends_on_z_and_on_the_mask():
    cfg = tiny_config(32, 2)
    gen = ReDO(cfg).generator.eval()  # eval: no power iteration between the two calls
    masks = torch.rand(1, 2, 32, 32)
    masks = masks / masks.sum(1, keepdim=True)
    z = torch.randn(1, 2, cfg.nz)
    a = gen(masks, z)
    z2 = z.clone()
    z2[:, 1] += 1.0
    b = gen(masks, z2)
    assert torch.equal(a[:, 0], b[:, 0])  # G_0 does not see z_1
    assert not torch.allclose(a[:, 1], b[:, 1])


def test_temperature_sharpens_masks():
    net = ReDO(tiny_config(32, 2)).mask_net
    x = torch.rand(1, 3, 32, 32)
    soft = net(x, temperature=10.0)
    hard = net(x, temperature=0.01)
    assert (hard - 0.5).abs().mean() > (soft - 0.5).abs().mean()


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("flowers", dict(mask_net=274_966, generator=15_913_790, discriminator=38_424_258, info_net=38_483_712)),
        ("lfw", dict(mask_net=274_966, generator=61_867_582, discriminator=38_424_258, info_net=38_483_712)),
        ("cub", dict(mask_net=274_966, generator=61_826_620, discriminator=38_419_137, info_net=38_483_712)),
    ],
)
def test_parameter_counts_equal_the_official_networks(preset, expected):
    assert ReDO(get_preset(preset).model).parameter_counts() == expected


def test_generator_widths_follow_the_image_size():
    assert generator_widths(128, 32) == [512, 512, 256, 128, 64, 32]  # official 16nf ... nf
    assert generator_widths(64, 8) == [128, 64, 32, 16, 8]
    assert generator_widths(32, 8) == [64, 32, 16, 8]


def test_self_attention_starts_as_identity_and_keeps_shape():
    att = SelfAttention(16)
    assert att.gamma.item() == 0
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(att(x), x)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    y = att(x)
    assert y.shape == x.shape and not torch.allclose(y, x)


def test_self_attention_weights_sum_to_one_over_pooled_keys():
    att = SelfAttention(16)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    # a constant value map: attention-weighted averages of a constant are that constant
    x = torch.randn(1, 16, 8, 8)
    q = att.query(x).flatten(2)
    k = torch.nn.functional.max_pool2d(att.key(x), 2).flatten(2)
    w = torch.softmax(k.transpose(1, 2) @ q, dim=1)
    assert w.shape == (1, 16, 64)
    assert torch.allclose(w.sum(1), torch.ones(1, 64))


def test_conditional_instance_norm_is_gamma_times_normalised_plus_beta():
    cin = ConditionalInstanceNorm(3, 4)
    x = torch.randn(2, 3, 5, 5)
    z = torch.randn(2, 4)
    normalised = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), unbiased=False, keepdim=True) + 1e-5)
    expected = cin.gamma(z)[:, :, None, None] * normalised + cin.beta(z)[:, :, None, None]
    assert torch.allclose(cin(x, z), expected, atol=1e-5)


def test_pyramid_pooling_official_mode_ignores_the_last_rows_like_the_official_layer():
    pp = PyramidPooling(2, 32, mode="official")
    x = torch.zeros(1, 2, 32, 32)
    x_changed = x.clone()
    x_changed[..., 30:, :] = 5.0  # rows the 3x3 (kernel 10) and 6x6 (kernel 5) levels never see
    with torch.no_grad():
        for conv in pp.convs:
            conv.weight.fill_(1.0)
            conv.bias.zero_()
        a, b = pp(x), pp(x_changed)
    assert torch.equal(a[:, 4], b[:, 4]) and torch.equal(a[:, 5], b[:, 5])  # levels 3 and 6
    assert not torch.equal(a[:, 2], b[:, 2])  # the global level sees everything
    assert pp(x).shape == (1, 6, 32, 32)


def test_orthogonal_init_targets_the_underlying_weight():
    model = ReDO(tiny_config(32, 2, init_gain=0.8))
    w = model.mask_net.encoder[1].weight.flatten(1)  # no spectral norm in F: gain visible
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    assert torch.allclose(gram, 0.64 * torch.eye(gram.shape[0]), atol=1e-4)
    dense = model.generator.generators[0].dense.weight  # (16*nf*16, nz): tall, columns orthogonal
    assert torch.allclose(dense.T @ dense, 0.64 * torch.eye(dense.shape[1]), atol=1e-4)
    conv = model.discriminator.blocks[1].conv1.parametrizations.weight.original.flatten(1)
    gram = conv @ conv.T if conv.shape[0] <= conv.shape[1] else conv.T @ conv
    assert torch.allclose(gram, 0.64 * torch.eye(gram.shape[0]), atol=1e-4)


def test_spectral_norm_only_outside_the_mask_network():
    model = ReDO(tiny_config(32, 2))
    assert not any("parametrizations" in n for n, _ in model.mask_net.named_parameters())
    for net in (model.generator, model.discriminator, model.info_net):
        assert any("parametrizations" in n for n, _ in net.named_parameters())


def test_invalid_configuration_is_explained():
    with pytest.raises(ValueError, match="image_size=48"):
        ReDO(tiny_config(48))
    with pytest.raises(ValueError, match="at least 2 regions"):
        ReDO(tiny_config(32, 1))


def test_fresh_model_is_spectrally_normalised_in_eval_mode():
    """u and v are re-estimated after the orthogonal initialisation (else eval-mode
    weights of a new model have singular values in the hundreds)."""
    model = ReDO(tiny_config(32, 2)).eval()
    for net in (model.generator, model.discriminator, model.info_net):
        for name, m in net.named_modules():
            if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
                w = m.weight.detach().flatten(1)
                sigma = torch.linalg.matrix_norm(w, ord=2).item()
                assert sigma < 1.05, (name, sigma)


def test_renamed_preset_warns_and_gives_the_same_settings():
    import warnings

    from redo_lib.config import PresetRenamedWarning, get_preset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = get_preset("synthetic")
    assert any(issubclass(w.category, PresetRenamedWarning) and "synthetic-flat" in str(w.message)
               for w in caught)
    assert old.to_dict() == get_preset("synthetic-flat").to_dict()
    assert old.train.dataset == "synthetic-flat"
