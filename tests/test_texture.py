"""redo_lib.texture: texture statistics on hand-made regions and on a generator's redraws."""
import math

import pytest
import torch

from redo_lib.generator import RegionGenerators
from redo_lib.texture import masked_edge_energy, masked_spread, redraw_texture


def _square(size=8, lo=2, hi=6):
    m = torch.zeros(1, 1, size, size)
    m[..., lo:hi, lo:hi] = 1
    return m


def test_flat_region_has_no_texture_whatever_lies_outside():
    images = torch.randn(1, 3, 8, 8)
    mask = _square()
    images[..., 2:6, 2:6] = torch.tensor([0.3, -0.2, 0.9])[:, None, None]
    assert masked_spread(images, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_edge_energy(images, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_alternating_columns():
    # columns alternate between -1 and 1 in every channel: spread 1; horizontal pairs differ
    # by 2, vertical pairs by 0, as many of each in a square -> edge energy 1
    images = torch.ones(1, 3, 8, 8)
    images[..., 1::2] = -1
    mask = _square()
    assert masked_spread(images, mask).item() == pytest.approx(1.0)
    assert masked_edge_energy(images, mask).item() == pytest.approx(1.0)
    # only the inside counts: the same stripes outside a flat square change nothing
    images[..., 2:6, 2:6] = 0.5
    assert masked_spread(images, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_two_colour_halves_hand_computed():
    # one channel: left half 0, right half 1 inside a 4 x 4 square; others flat
    images = torch.zeros(1, 3, 4, 4)
    images[0, 0, :, 2:] = 1
    mask = torch.ones(1, 4, 4)  # (B, H, W) accepted
    assert masked_spread(images, mask).item() == pytest.approx(0.5 / 3)  # std 0.5 in one channel of 3
    # 24 pairs (12 horizontal, 12 vertical); 4 horizontal pairs cross the edge, each |1| / 3 channels
    assert masked_edge_energy(images, mask).item() == pytest.approx(4 / 3 / 24)


def test_empty_mask_is_nan_and_soft_masks_are_thresholded():
    images = torch.randn(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[1] = 0.7  # soft but >= 0.5 everywhere: the whole image
    spread = masked_spread(images, mask)
    assert math.isnan(spread[0].item())
    assert spread[1].item() == pytest.approx(images[1].flatten(1).std(1, unbiased=False).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        masked_spread(images, torch.zeros(2, 2, 8, 8))


def _generators(nz=3):
    torch.manual_seed(0)
    return RegionGenerators(image_size=32, n_regions=2, nz=nz, nf=4)


def test_a_generator_that_paints_one_colour_has_ratio_zero():
    gens = _generators()
    # G_0 replaced by one that paints every region in one colour: M_0 * 0.4
    gens.generators[0].register_forward_hook(lambda module, args, out: 0.4 * args[0].expand_as(out))
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    truth = torch.zeros(4, 2, 32, 32)
    truth[:, 0, 8:24, 8:24] = 1
    truth[:, 1] = 1 - truth[:, 0]
    stats = redraw_texture(gens, images, truth)
    assert stats["redraw_spread"] == pytest.approx(0.0, abs=1e-6)
    assert stats["spread_ratio"] == pytest.approx(0.0, abs=1e-5)
    assert stats["real_spread"] > 0.4  # uniform noise in [-1, 1]: std 0.577
    # the other generator was left as initialised and paints something
    other = redraw_texture(gens, images, truth, region=0, generator_region=1)
    assert other["redraw_spread"] > 0


def test_redraw_texture_is_repeatable_and_keeps_the_mode():
    gens = _generators()
    gens.train()
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    truth = torch.zeros(3, 2, 32, 32)
    truth[:, 0, 4:20, 10:30] = 1
    truth[:, 1] = 1 - truth[:, 0]
    a = redraw_texture(gens, images, truth, seed=5)
    b = redraw_texture(gens, images, truth, seed=5)
    assert a == b
    assert gens.training
    assert set(a) == {"real_spread", "redraw_spread", "real_edges", "redraw_edges", "spread_ratio", "edge_ratio"}


def test_ratio_is_nan_where_the_real_objects_have_no_texture():
    gens = _generators()
    images = torch.full((2, 3, 32, 32), -0.5)
    images[:, :, 8:24, 8:24] = 0.3  # flat-coloured objects: spread and edges 0 (up to rounding)
    truth = torch.zeros(2, 2, 32, 32)
    truth[:, 0, 8:24, 8:24] = 1
    truth[:, 1] = 1 - truth[:, 0]
    stats = redraw_texture(gens, images, truth)
    assert stats["real_spread"] < 1e-6 and math.isnan(stats["edge_ratio"]) and math.isnan(stats["spread_ratio"])
    assert stats["redraw_edges"] > 0  # the untrained generator paints something
