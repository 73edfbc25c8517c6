"""Accuracy and IoU under both protocols, on hand-computed cases."""
import pytest
import torch

from redo_lib.metrics import SegmentationMeter, binary_scores, hard_regions, object_polarity, region_shares


def two_by_two(rows_fg):
    m = torch.zeros(1, 2, 2, 2)
    m[0, 0] = torch.tensor(rows_fg, dtype=torch.float)
    m[0, 1] = 1 - m[0, 0]
    return m


def test_official_and_dataset_protocols_by_hand():
    masks = torch.cat([two_by_two([[1, 1], [0, 0]]), two_by_two([[1, 1], [0, 0]])])
    truth = torch.tensor([[[[1.0, 0], [0, 0]]], [[[0, 0], [1, 1]]]])
    meter = SegmentationMeter(2)
    meter.update(masks, truth)
    s = meter.compute()
    # image 1: region 0 = foreground gives acc 3/4, IoU 1/2 (the other way: 1/4, 0)
    # image 2: region 1 = foreground gives acc 1, IoU 1
    assert s["accuracy"] == pytest.approx((0.75 + 1) / 2)
    assert s["iou"] == pytest.approx((0.5 + 1) / 2)
    # one assignment for both: region 1 = foreground (mean IoU 0.5 against 0.25)
    assert s["iou_dataset"] == pytest.approx(0.5)
    assert s["accuracy_dataset"] == pytest.approx((0.25 + 1) / 2)
    assert s["n_images"] == 2
    assert s["assignment"] == [1, 0]


def test_accuracy_and_iou_maxima_are_taken_independently():
    # 1 x 5 image: truth fg = 1 pixel; pred region 0 = 3 pixels including it
    masks = torch.zeros(1, 2, 1, 5)
    masks[0, 0, 0, :3] = 1
    masks[0, 1] = 1 - masks[0, 0]
    truth = torch.zeros(1, 1, 1, 5)
    truth[0, 0, 0, 0] = 1
    meter = SegmentationMeter(2)
    meter.update(masks, truth)
    s = meter.compute()
    # region 0 as fg: acc 3/5, IoU 1/3; region 1 as fg: acc 2/5, IoU 0
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["iou"] == pytest.approx(1 / 3)


def test_matches_the_official_batch_formula():
    torch.manual_seed(0)
    masks = torch.rand(6, 1, 8, 8)
    masks = torch.cat([masks, 1 - masks], 1)
    truth = (torch.rand(6, 1, 8, 8) > 0.6).float()
    p = masks[:, :1]
    acc = torch.max(((p >= .5).float() == truth).float().mean((-1, -2)),
                    ((p < .5).float() == truth).float().mean((-1, -2))).mean()
    iou = torch.max((((p >= .5).float() + truth) == 2).float().sum((-1, -2)) / (((p >= .5).float() + truth) >= 1).float().sum((-1, -2)),
                    (((p < .5).float() + truth) == 2).float().sum((-1, -2)) / (((p < .5).float() + truth) >= 1).float().sum((-1, -2))).mean()
    meter = SegmentationMeter(2)
    meter.update(masks[:4], truth[:4])
    meter.update(masks[4:], truth[4:])  # batches are pooled per image
    s = meter.compute()
    assert s["accuracy"] == pytest.approx(acc.item())
    assert s["iou"] == pytest.approx(iou.item())


def test_three_regions_use_the_best_matching():
    # 1 x 6 image: truth classes digit0, digit1, background (last)
    truth_idx = torch.tensor([[[0, 0, 1, 1, 2, 2]]])
    truth = torch.nn.functional.one_hot(truth_idx, 3).permute(0, 3, 1, 2).float()
    # prediction: a permutation of the truth labels -> perfect after matching
    pred_idx = torch.tensor([[[2, 2, 0, 0, 1, 1]]])
    masks = torch.nn.functional.one_hot(pred_idx, 3).permute(0, 3, 1, 2).float()
    meter = SegmentationMeter(3)
    meter.update(masks, truth)
    s = meter.compute()
    assert s["accuracy"] == pytest.approx(1.0)
    assert s["iou"] == pytest.approx(1.0)
    assert s["iou_dataset"] == pytest.approx(1.0)
    assert s["assignment"] == [2, 0, 1]


def test_hard_regions_threshold_and_binary_scores():
    masks = torch.tensor([[[[0.5, 0.49]], [[0.5, 0.51]]]])
    assert hard_regions(masks).tolist() == [[[0, 1]]]  # >= 0.5 is region 0, like the official code
    acc, iou = binary_scores(torch.tensor([[[True, False]]]), torch.tensor([[[False, False]]]))
    assert acc.item() == 0.5 and iou.item() == 0.0
    acc, iou = binary_scores(torch.tensor([[[False]]]), torch.tensor([[[False]]]))
    assert iou.item() == 1.0  # empty union


def test_object_polarity_picks_the_region_with_the_better_iou_per_image():
    truth = torch.tensor([[[1, 1, 0, 0]], [[1, 1, 0, 0]]]).bool()
    region0 = torch.tensor([[[0.9, 0.8, 0.1, 0.2]],   # region 0 is the object: IoU 1
                            [[0.1, 0.3, 0.9, 0.6]]])  # region 1 is the object: IoU 1 after the flip
    soft, iou, flipped = object_polarity(region0, truth)
    assert flipped.tolist() == [False, True]
    assert iou.tolist() == [1.0, 1.0]
    assert torch.allclose(soft[1], 1 - region0[1]) and torch.equal(soft[0], region0[0])
    # agrees with the official per-image protocol of the meter
    meter = SegmentationMeter(2)
    region0 = torch.tensor([[[0.9, 0.4, 0.6, 0.2]], [[0.1, 0.7, 0.9, 0.6]]])
    meter.update(torch.stack([region0, 1 - region0], 1), truth[:, None].float())
    assert object_polarity(region0, truth)[1].mean().item() == pytest.approx(meter.compute()["iou"])


def test_min_region_size_and_errors():
    meter = SegmentationMeter(2)
    with pytest.raises(ValueError, match="no image was scored"):
        meter.compute()
    masks = torch.zeros(1, 2, 2, 2)
    masks[0, 0, 0, 0] = 1
    masks[0, 1] = 1 - masks[0, 0]
    meter.update(masks, torch.zeros(1, 1, 2, 2))
    assert meter.compute()["min_region_size"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="differ in size"):
        meter.update(masks, torch.zeros(1, 1, 3, 3))


def test_region_shares_soft_and_hard_by_hand():
    masks = torch.zeros(1, 2, 2, 2)
    masks[0, 0] = torch.tensor([[0.9, 0.4], [0.4, 0.4]])  # soft share 0.525, one pixel >= 0.5
    masks[0, 1] = 1 - masks[0, 0]
    shares = region_shares(masks)
    assert torch.allclose(shares["soft"], torch.tensor([[0.525, 0.475]]))
    assert torch.equal(shares["hard"], torch.tensor([[0.25, 0.75]]))
    # a haze: region 1 holds a fifth of the image softly and nothing once thresholded
    haze = torch.stack([torch.full((4, 4), 0.8), torch.full((4, 4), 0.2)])[None]
    assert region_shares(haze)["hard"][0, 1] == 0 and region_shares(haze)["soft"][0, 1].item() == pytest.approx(0.2)


def test_region_shares_with_three_regions_use_the_argmax():
    masks = torch.tensor([[0.5, 0.2], [0.3, 0.3], [0.2, 0.5]]).view(1, 3, 1, 2)
    assert torch.equal(region_shares(masks)["hard"], torch.tensor([[0.5, 0.0, 0.5]]))
