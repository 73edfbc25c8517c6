"""Baselines: the output contract and their scores on images with a known answer."""
import math

import pytest
import torch

from redo_lib.baselines import BASELINES, centred_disk, disk_radius_for_fraction, evaluate_baseline
from redo_lib.metrics import SegmentationMeter


def score(masks, truth):
    meter = SegmentationMeter(2)
    meter.update(masks, truth)
    return meter.compute()


def disk(size, radius, cy=0.5, cx=0.5):
    ys = (torch.arange(size) + 0.5) / size
    xs = (torch.arange(size) + 0.5) / size
    return ((ys[:, None] - cy) ** 2 + (xs[None] - cx) ** 2 <= radius ** 2).float()


def two_colour_images(b=4, size=32):
    """Object pixels one colour, background another (different per image), object off-centre."""
    g = torch.Generator().manual_seed(0)
    images, truths = [], []
    for i in range(b):
        fg = disk(size, 0.2 + 0.03 * i, cy=0.4, cx=0.55)
        colours = torch.rand(2, 3, 1, 1, generator=g) * 2 - 1
        colours[1] = -colours[0].clamp(-0.8, 0.8)  # far apart
        images.append(fg * colours[0] + (1 - fg) * colours[1])
        truths.append(fg[None])
    return torch.stack(images), torch.stack(truths)


@pytest.mark.parametrize("name", ["all-foreground", "centred-disk", "kmeans", "grabcut", "iem"])
def test_contract_shape_values_and_sum(name):
    if name == "grabcut":
        pytest.importorskip("cv2")
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    masks = BASELINES[name](x)
    assert masks.shape == (3, 2, 32, 32)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(masks.sum(1), torch.ones(3, 32, 32))


def test_all_foreground_iou_is_the_object_fraction():
    truth = torch.zeros(2, 1, 10, 10)
    truth[0, :, :5] = 1  # 50 %
    truth[1, :, :2] = 1  # 20 %
    result = score(BASELINES["all-foreground"](torch.zeros(2, 3, 10, 10)), truth)
    assert result["iou"] == pytest.approx(0.35)
    assert result["iou_dataset"] == pytest.approx(0.35)


def test_centred_disk_matches_a_centred_disk_truth():
    size = 64
    truth = disk(size, 0.35).expand(2, 1, size, size)
    result = score(centred_disk(torch.zeros(2, 3, size, size)), truth)
    assert result["iou"] == pytest.approx(1.0)
    fraction = centred_disk(torch.zeros(1, 3, 128, 128))[:, 0].mean().item()
    assert fraction == pytest.approx(math.pi * 0.35 ** 2, abs=0.01)
    assert disk_radius_for_fraction(math.pi * 0.35 ** 2) == pytest.approx(0.35)


def test_kmeans_separates_two_colours_with_the_object_as_region_0():
    images, truth = two_colour_images()
    result = score(BASELINES["kmeans"](images), truth)
    assert result["iou"] == pytest.approx(1.0)
    assert result["iou_dataset"] == pytest.approx(1.0)  # polarity right on every image


def test_kmeans_batch_equals_one_image_at_a_time():
    """The batched k-means (one call for many images) gives each image its own answer.

    (Its speed is measured by ``benchmarks``-style scripts, not asserted in a test.)
    """
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    together = BASELINES["kmeans"](x)
    alone = torch.cat([BASELINES["kmeans"](x[i:i + 1]) for i in range(6)])
    assert torch.equal(together, alone)


def test_grabcut_finds_an_object_on_a_plain_background():
    pytest.importorskip("cv2")
    size = 64
    g = torch.Generator().manual_seed(0)
    fg = disk(size, 0.25, cy=0.45, cx=0.5)
    texture = torch.rand(3, size, size, generator=g) * 0.3
    image = fg * (torch.tensor([0.8, -0.2, -0.6]).view(3, 1, 1) + texture) + (1 - fg) * torch.tensor(
        [-0.5, 0.1, 0.6]).view(3, 1, 1)
    masks = BASELINES["grabcut"](image[None])
    result = score(masks, fg[None, None])
    assert result["iou"] > 0.8
    assert result["assignment"] == [0, 1]


def test_grabcut_without_opencv_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("no cv2")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install opencv-python-headless"):
        BASELINES["grabcut"](torch.zeros(1, 3, 16, 16))


def test_evaluate_baseline_on_a_list_dataset():
    images, truth = two_colour_images(b=5)
    dataset = [{"image": images[i], "mask": truth[i], "index": i} for i in range(5)]
    result = evaluate_baseline("kmeans", dataset, batch_size=2, progress=False)
    assert result["n_images"] == 5 and result["iou"] == pytest.approx(1.0)
    assert result["seconds_per_image"] > 0 and result["cpu_seconds_per_image"] >= 0 and result["threads"] >= 1
    assert evaluate_baseline("centred-disk", dataset, max_images=3, progress=False)["n_images"] == 3
    with pytest.raises(ValueError, match="unknown baseline"):
        evaluate_baseline("nope", dataset)
    with pytest.raises(ValueError, match="no ground-truth"):
        evaluate_baseline("kmeans", [{"image": images[0]}], progress=False)


def test_iem_separates_two_colours_like_kmeans():
    images, truth = two_colour_images()
    assert score(BASELINES["iem"](images), truth)["iou"] > 0.9


def test_stored_ladder_baselines_cover_every_baseline_on_the_same_test_split():
    """data/ladder/<level>/baselines-32px.json (benchmarks/ladder.py baselines) holds every baseline."""
    import json

    from redo_lib import ladder

    for name in ladder.LEVELS.values():
        stored = json.loads((ladder.default_root() / name / "baselines-32px.json").read_text())
        assert set(stored) == set(BASELINES), name
        for baseline, scores in stored.items():
            assert (scores["dataset"], scores["split"], scores["image_size"], scores["n_images"]) == (
                name, "test", 32, 512), (name, baseline)
        assert stored["iem"]["threads"] == 1 and stored["iem"]["cpu_seconds_per_image"] > 0
