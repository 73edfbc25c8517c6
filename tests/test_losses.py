"""Loss values on small hand-computed cases."""
import math

import pytest
import torch

from redo_lib import LossConfig
from redo_lib.losses import (binarization_loss, discriminator_hinge_loss, generator_adversarial_loss, information_loss,
                             min_area_loss)


def test_hinge_loss_by_hand():
    d_real = torch.tensor([[2.0], [0.5], [-1.0]])  # relu(1 - d): 0, 0.5, 2 -> mean 2.5 / 3
    d_fake = torch.tensor([[-3.0], [0.0]])  # relu(1 + d): 0, 1 -> mean 0.5
    assert discriminator_hinge_loss(d_real, d_fake).item() == pytest.approx(2.5 / 3 + 0.5)


def test_hinge_loss_matches_the_official_formulation():
    d_real, d_fake = torch.randn(5, 1), torch.randn(10, 1)
    pos, neg = -1 + d_real, -1 - d_fake
    official = -((pos < 0).float() * pos).mean() - ((neg < 0).float() * neg).mean()
    assert torch.allclose(discriminator_hinge_loss(d_real, d_fake), official)


def test_generator_adversarial_loss():
    assert generator_adversarial_loss(torch.tensor([[1.0], [3.0]])).item() == -2.0


def test_information_loss_mean_of_squares_and_plain_norm():
    z = torch.zeros(1, 2, 2)
    z_pred = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])
    # mean of element-wise squares: (9 + 16) / 4
    assert information_loss(z_pred, z).item() == pytest.approx(25 / 4)
    # preprint: unsquared norm per region, averaged over regions: (5 + 0) / 2
    assert information_loss(z_pred, z, "l2_norm").item() == pytest.approx(2.5)
    # the paper's lambda relates to the code's weight by lambda_z = lambda / (K * nz)
    k, nz = 2, 2
    assert information_loss(z_pred, z).item() * k * nz == pytest.approx((z_pred - z).pow(2).sum().item())


def test_information_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        information_loss(torch.zeros(1, 2, 3), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="unknown information loss"):
        information_loss(torch.zeros(1), torch.zeros(1), "l1")


def test_unit_gaussian_code_has_unit_loss_when_predicting_zero():
    z = torch.randn(2000, 2, 32)
    assert information_loss(torch.zeros_like(z), z).item() == pytest.approx(1.0, abs=0.02)
    assert information_loss(torch.zeros_like(z), z, "l2_norm").item() == pytest.approx(math.sqrt(31.5), abs=0.05)


# ------------------------------------------------- the minimum-area hinge (an addition)
def test_min_area_loss_by_hand():
    masks = torch.zeros(2, 2, 2, 2)
    masks[0, 0, 0, 0] = 0.2  # image 0: region 0 holds 0.05 of the image, region 1 0.95
    masks[0, 1] = 1.0
    masks[0, 1, 0, 0] = 0.8
    masks[1] = 0.5  # image 1: both regions hold half
    # only image 0's region 0 is under 0.1: (0.1 - 0.05) / (B K = 4)
    assert min_area_loss(masks, 0.1).item() == pytest.approx(0.0125)
    assert min_area_loss(masks, 0.05).item() == 0.0
    assert min_area_loss(masks, 0.0).item() == 0.0


def test_min_area_loss_pushes_only_the_small_region_up_by_the_same_amount_per_pixel():
    masks = torch.full((1, 2, 4, 4), 0.5)
    masks[0, 0] = 0.02
    masks[0, 1] = 0.98
    masks.requires_grad_(True)
    min_area_loss(masks, 0.1).backward()
    # d/dM = -1 / (B K H W) on each pixel of the region below the floor, 0 elsewhere
    assert torch.allclose(masks.grad[0, 0], torch.full((4, 4), -1 / 32))
    assert torch.count_nonzero(masks.grad[0, 1]) == 0


def test_min_area_loss_rejects_masks_without_a_region_axis():
    with pytest.raises(ValueError, match="B, K, H, W"):
        min_area_loss(torch.rand(4, 8, 8), 0.1)


def test_binarization_loss_by_hand_and_its_gradient():
    masks = torch.tensor([[[[0.0, 1.0], [0.2, 0.5]]]], requires_grad=True)
    # min(m, 1 - m): 0, 0, 0.2, 0.5 -> mean 0.175
    loss = binarization_loss(masks)
    assert loss.item() == pytest.approx(0.175)
    loss.backward()
    # below 0.5 the term pulls a pixel down (+1/4), above it up; hard pixels feel it too
    # (their one-sided gradient), which the sigmoid's vanishing slope makes harmless
    assert masks.grad[0, 0, 1, 0].item() == pytest.approx(0.25)
    assert binarization_loss(torch.tensor([0.0, 1.0, 1.0, 0.0])).item() == 0.0


@pytest.mark.parametrize("options, match", [({"min_area": 1.0}, "min_area"), ({"min_area": -0.1}, "min_area"),
                                            ({"min_area_weight": -1.0}, "min_area_weight"),
                                            ({"binarization": -2.0}, "binarization")])
def test_min_area_options_are_validated(options, match):
    with pytest.raises(ValueError, match=match):
        LossConfig(**options).validate()
