"""The generative process: composition, redrawing, assembling (spec section 1)."""
import torch

from redo_lib import ReDO
from redo_lib.generative import assemble, flatten_regions, fully_generated, redraw, sample_z
from tests.conftest import tiny_config


def test_assemble_keeps_original_pixels_outside_the_redrawn_region():
    images = torch.rand(2, 3, 4, 4)
    masks = torch.zeros(2, 2, 4, 4)
    masks[:, 0, :2] = 1
    masks[:, 1] = 1 - masks[:, 0]
    redraws = torch.full((2, 2, 3, 4, 4), 7.0) * masks.unsqueeze(2)
    comp = assemble(images, masks, redraws)
    assert comp.shape == (2, 2, 3, 4, 4)
    # composite 0: region 0 (top rows) redrawn, region 1 original
    assert torch.equal(comp[:, 0, :, :2], torch.full((2, 3, 2, 4), 7.0))
    assert torch.equal(comp[:, 0, :, 2:], images[:, :, 2:])
    assert torch.equal(comp[:, 1, :, :2], images[:, :, :2])
    # soft masks blend: M * V + (1 - M) * I
    soft = torch.full((1, 2, 4, 4), 0.25)
    soft[:, 1] = 0.75
    v = torch.ones(1, 2, 3, 4, 4)
    comp = assemble(images[:1], soft, v * soft.unsqueeze(2))
    assert torch.allclose(comp[0, 0], 0.25 + 0.75 * images[0])


def test_fully_generated_is_the_sum_of_the_redraws_and_flatten_is_image_major():
    redraws = torch.arange(2 * 3 * 3 * 2 * 2, dtype=torch.float).view(2, 3, 3, 2, 2)
    assert torch.equal(fully_generated(redraws), redraws.sum(1))
    flat = flatten_regions(redraws)
    assert flat.shape == (6, 3, 2, 2)
    assert torch.equal(flat[4], redraws[1, 1])


def test_redraw_all_regions_and_one_region():
    cfg = tiny_config(32, 3)
    model = ReDO(cfg)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = redraw(model, x)
    assert out.fakes.shape == (6, 3, 32, 32)
    assert out.full.shape == (2, 3, 32, 32)
    assert torch.allclose(out.masks.sum(1), torch.ones(2, 32, 32), atol=1e-6)
    one = redraw(model, x, z=out.z, regions=[1])
    assert one.fakes.shape == (2, 3, 32, 32)
    assert torch.equal(one.redraws[:, 0], torch.zeros_like(one.redraws[:, 0]))


def test_hand_made_masks_skip_the_mask_network():
    model = ReDO(tiny_config(32, 2))
    x = torch.rand(1, 3, 32, 32)
    masks = torch.zeros(1, 2, 32, 32)
    masks[:, 1] = 1  # region 0 empty: its composite is the original image
    out = redraw(model, x, masks=masks)
    assert torch.allclose(out.composites[:, 0], x)


def test_sample_z_is_standard_normal_and_reproducible():
    g = torch.Generator().manual_seed(3)
    z = sample_z(4000, 2, 8, generator=g)
    assert z.shape == (4000, 2, 8)
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    assert torch.equal(sample_z(2, 2, 8, generator=torch.Generator().manual_seed(1)),
                       sample_z(2, 2, 8, generator=torch.Generator().manual_seed(1)))
