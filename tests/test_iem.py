"""IEM (redo_lib.iem): the inpainter, the objective, the update rule and the search, on hand-made cases."""
import json

import pytest
import torch
import torch.nn.functional as F

from redo_lib.iem import (IEMConfig, blur, blur_matrix, boundary, gaussian_kernel, iem, iem_masks, iem_step,
                          initial_mask, inpaint, inpainting_error, majority_filter)

OBJECT = torch.tensor([0.7, -0.3, -0.5]).view(1, 3, 1, 1)
BACKGROUND = torch.tensor([-0.6, 0.2, 0.5]).view(1, 3, 1, 1)
BOX = (8, 20, 12, 26)  # rows 8-19, columns 12-25: a 12 x 14 object, off-centre


def box_mask(r0, r1, c0, c1, size=32):
    mask = torch.zeros(1, 1, size, size)
    mask[..., r0:r1, c0:c1] = 1
    return mask


def flat_square(size=32):
    """A flat-coloured rectangle on a flat background of another colour, in [-1, 1]."""
    truth = box_mask(*BOX, size=size)
    return truth * OBJECT + (1 - truth) * BACKGROUND, truth


def iou(a, b):
    return ((a * b).sum() / ((a + b) > 0).sum()).item()


# ----------------------------------------------------------------------------- hyper-parameters
def test_paper_values_at_128_and_scaled_to_32_and_64():
    assert IEMConfig.for_image_size(128) == IEMConfig()
    paper = IEMConfig()
    assert (paper.sigma, paper.kernel_size, paper.blur_passes, paper.n_steps) == (5.0, 11, 2, 150)
    small, medium = IEMConfig.for_image_size(32), IEMConfig.for_image_size(64)
    assert (small.sigma, small.kernel_size, small.n_steps) == (1.25, 3, 38)
    assert (medium.sigma, medium.kernel_size, medium.n_steps) == (2.5, 7, 75)
    for config in (small, medium):  # what does not scale
        assert (config.blur_passes, config.margin, config.boundary_width, config.variance_weight) == (
            paper.blur_passes, paper.margin, paper.boundary_width, paper.variance_weight)
    assert IEMConfig.for_image_size(32, n_steps=5).n_steps == 5


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="kernel_size"):
        IEMConfig(kernel_size=4)
    with pytest.raises(ValueError, match="margin"):
        IEMConfig(margin=0.5)
    with pytest.raises(ValueError, match="unknown IEM option.*valid: sigma"):
        IEMConfig.for_image_size(32, sigmaa=1.0)
    with pytest.raises(ValueError, match="unknown IEM option"):
        iem(torch.zeros(1, 3, 16, 16), steps=3)


# ----------------------------------------------------------------------------- the inpainter
def test_blur_matrices_equal_repeated_zero_padded_convolutions():
    config = IEMConfig(sigma=1.5, kernel_size=5, blur_passes=2)
    x = torch.rand(2, 4, 12, 9, generator=torch.Generator().manual_seed(0))
    kernel = gaussian_kernel(1.5, 5)
    assert kernel.sum().item() == pytest.approx(1.0)
    weight = (kernel[:, None] * kernel[None, :]).expand(4, 1, 5, 5)
    expected = x
    for _ in range(2):
        expected = F.conv2d(expected, weight, padding=2, groups=4)
    assert torch.allclose(blur(x, config), expected, atol=1e-6)
    assert torch.allclose(blur_matrix(9, config), blur_matrix(9, config).T)


def test_inpainter_reproduces_a_constant_image_exactly():
    config = IEMConfig.for_image_size(32)
    image = torch.full((2, 3, 32, 32), 0.37)
    visible = (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    assert torch.allclose(inpaint(image, visible, config), image, atol=1e-6)


def test_inpainter_fills_from_nearby_pixels_and_falls_back_to_the_visible_mean():
    config = IEMConfig.for_image_size(32)  # reach: 2 passes x radius 1 = 2 pixels
    image = torch.zeros(1, 1, 32, 32)
    image[..., :, 16:] = 1.0
    visible = box_mask(0, 32, 0, 4)  # only columns 0-3 (value 0) ...
    visible[..., 0, 31] = 1  # ... and one pixel of value 1 in a corner
    predicted = inpaint(image, visible, config)
    assert predicted[..., 10, 5].item() == 0.0  # two columns from visible zeros
    mean = 1 / (4 * 32 + 1)
    assert predicted[..., 10, 10].item() == pytest.approx(mean)  # out of reach: the visible mean
    assert predicted[..., 1, 30].item() == pytest.approx(1.0)  # reached by the corner pixel only


def test_objective_by_linearity_equals_two_direct_inpaintings():
    config = IEMConfig.for_image_size(32, variance_weight=0.0)
    g = torch.Generator().manual_seed(2)
    images = torch.rand(3, 3, 32, 32, generator=g)
    mask = (torch.rand(3, 1, 32, 32, generator=g) > 0.5).float()
    error_fg = (images - inpaint(images, 1 - mask, config)).abs().mean(1, keepdim=True)
    error_bg = (images - inpaint(images, mask, config)).abs().mean(1, keepdim=True)
    direct = ((error_fg * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3))
              + (error_bg * (1 - mask)).sum((1, 2, 3)) / (1 - mask).sum((1, 2, 3)))
    assert torch.allclose(inpainting_error(images, mask, config), direct, atol=1e-5)


def test_the_true_mask_scores_higher_than_a_shifted_one():
    image, truth = flat_square()
    config = IEMConfig.for_image_size(32)
    x = (image + 1) / 2
    shifted = torch.roll(truth, shifts=(3, -3), dims=(2, 3))
    assert inpainting_error(x, truth, config).item() > inpainting_error(x, shifted, config).item() + 0.1


# ----------------------------------------------------------------------------- the update rule
def test_boundary_is_both_sides_of_the_edge_and_not_the_image_border():
    mask = box_mask(0, 3, 0, 32, size=8)[..., :8, :8]  # rows 0-2 object
    edge = boundary(mask)[0, 0]
    assert edge[2].all() and edge[3].all()  # the last object row and the first background row
    assert not edge[:2].any() and not edge[4:].any()
    assert boundary(mask, width=2)[0, 0, 1:5].all() and not boundary(mask, width=2)[0, 0, 5:].any()
    assert not boundary(torch.ones(1, 1, 8, 8)).any()


def test_majority_filter_on_a_hand_made_5x5_pattern():
    pattern = torch.tensor([[0, 0, 0, 0, 0],
                            [0, 1, 1, 1, 0],
                            [0, 1, 0, 1, 0],
                            [0, 1, 1, 0, 1],
                            [1, 0, 0, 0, 1]], dtype=torch.float32).view(1, 1, 5, 5)
    # Counted by hand: object pixels among the in-image 3 x 3 neighbourhood (9 inside, 6 on an
    # edge, 4 in a corner); more than half -> 1, less -> 0, exactly half (edges, corners) -> kept.
    expected = torch.tensor([[0, 0, 0, 0, 0],
                             [0, 0, 1, 0, 0],
                             [0, 1, 1, 1, 0],
                             [0, 0, 0, 0, 1],
                             [1, 0, 0, 0, 1]], dtype=torch.float32).view(1, 1, 5, 5)
    assert torch.equal(majority_filter(pattern), expected)


def test_one_step_changes_no_pixel_far_from_the_boundary():
    """Flips only on the boundary (width 1), then a 3 x 3 filter: nothing changes beyond 2 pixels."""
    g = torch.Generator().manual_seed(3)
    images = torch.rand(4, 3, 32, 32, generator=g)
    mask = (F.avg_pool2d(torch.rand(4, 1, 32, 32, generator=g), 5, 1, 2) > 0.5).float()
    config = IEMConfig.for_image_size(32)
    after = iem_step(images, mask, config)
    near = boundary(mask, width=2)
    assert (after != mask).any()  # something moved
    assert torch.equal(after[~near], mask[~near])


# ----------------------------------------------------------------------------- the search
def test_converges_to_a_flat_square_from_the_centred_square_and_from_nearby_masks():
    image, truth = flat_square()
    assert iou(iem(image)[:, :1], truth) > 0.9  # default start: the centred square
    starts = {"too large": box_mask(5, 23, 9, 29), "too small": box_mask(9, 19, 13, 25),
              "offset": box_mask(9, 21, 11, 25)}
    for name, start in starts.items():
        assert iou(start, truth) < 0.75, name
        assert iou(iem_masks(image, init=start), truth) > 0.9, name


def test_batch_equals_one_image_at_a_time_and_output_contract():
    g = torch.Generator().manual_seed(4)
    images = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    together = iem(images, n_steps=5)
    alone = torch.cat([iem(images[i:i + 1], n_steps=5) for i in range(3)])
    assert torch.equal(together, alone)
    assert together.shape == (3, 2, 16, 16) and torch.equal(together.sum(1), torch.ones(3, 16, 16))
    assert torch.equal(iem(images, n_steps=0)[:, :1], initial_mask(3, 16, 16, 0.2))


def test_evaluate_baseline_iem_command_scores_and_times(capsys):
    from redo_lib.cli import main

    code = main(["evaluate", "--baseline", "iem", "--dataset", "synthetic-flat", "--image-size", "32",
                 "--max-images", "6", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["baseline"] == "iem" and result["n_images"] == 6
    assert 0 <= result["iou"] <= 1 and result["seconds_per_image"] > 0 and result["threads"] >= 1
