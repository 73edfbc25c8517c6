"""The synthetic default data set: deterministic, exact masks, fair and fast enough."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from redo_lib.data import SyntheticShapes, UnknownNameError, load_dataset
from redo_lib.data.synthetic import DEFAULT_LENGTHS, OBJECT_FRACTION, OBJECT_FRACTION_K3


def test_defaults_and_api():
    data = load_dataset("synthetic", None, "train", image_size=32)
    assert len(data) == DEFAULT_LENGTHS["train"] == 4000
    assert len(load_dataset("synthetic", None, "val", image_size=32)) == 256
    assert len(load_dataset("synthetic", None, "test", image_size=32)) == 512
    assert data.n_regions == 2 and data.has_masks
    assert len(load_dataset("synthetic", None, "train", image_size=32, length=10)) == 10
    with pytest.raises(UnknownNameError, match="train, val, test"):
        load_dataset("synthetic", None, "all")
    with pytest.raises(IndexError):
        data.batch([4000])


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("k", [2, 3])
def test_shapes_ranges_and_exact_masks(size, k):
    data = SyntheticShapes(split="val", image_size=size, n_regions=k, length=32)
    batch = data.batch(range(16))
    image, mask = batch["image"], batch["mask"]
    assert image.shape == (16, 3, size, size) and image.dtype == torch.float32
    assert mask.shape == (16, 1 if k == 2 else 3, size, size) and mask.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    if k == 3:
        assert torch.equal(mask.sum(1), torch.ones(16, size, size))  # one-hot, background last
    # the mask is what was drawn: the composite is the object layer inside, background outside
    layers = data.render(range(16))
    regions = torch.from_numpy(layers["regions"]).float()
    assert torch.equal(regions, mask[:, : k - 1])
    composite = np.where(layers["regions"][:, 0, None], layers["objects"][:, 0], layers["background"])
    if k == 3:
        composite = np.where(layers["regions"][:, 1, None], layers["objects"][:, 1], composite)
    assert np.allclose(composite, image.numpy(), atol=1e-6)  # same colours, up to float rounding


def test_object_fraction_in_the_stated_range():
    fractions = SyntheticShapes(split="train", image_size=64, length=400).batch(range(400))["mask"].mean((1, 2, 3))
    low, high = OBJECT_FRACTION
    assert fractions.min() >= low - 0.01 and fractions.max() <= high + 0.01
    assert fractions.max() - fractions.min() > 0.2  # the whole range is used
    k3 = SyntheticShapes(split="train", image_size=64, n_regions=3, length=200).batch(range(200))["mask"]
    per_object = k3[:, :2].mean((2, 3))
    assert per_object.min() >= OBJECT_FRACTION_K3[0] / 2 - 0.01  # the lower object keeps its core
    assert per_object.max() <= OBJECT_FRACTION_K3[1] + 0.01


def test_deterministic_by_seed_index_and_split():
    a = SyntheticShapes(split="train", image_size=32, seed=1)
    b = SyntheticShapes(split="train", image_size=32, seed=1)
    assert torch.equal(a[17]["image"], b[17]["image"]) and torch.equal(a[17]["mask"], b[17]["mask"])
    batch = a.batch([5, 17, 3])
    assert torch.equal(batch["image"][1], a[17]["image"])  # order-free: batch == items
    assert batch["index"].tolist() == [5, 17, 3]
    assert not torch.equal(a[17]["image"], SyntheticShapes(split="train", image_size=32, seed=2)[17]["image"])
    val = SyntheticShapes(split="val", image_size=32, seed=1)
    assert not torch.equal(a[17]["image"], val[17]["image"])
    train_set = {a[i]["image"].numpy().tobytes() for i in range(64)}
    assert not train_set & {val[i]["image"].numpy().tobytes() for i in range(64)}


def test_same_scene_at_every_size():
    small = SyntheticShapes(image_size=32, length=8).batch(range(8))["mask"].mean((1, 2, 3))
    large = SyntheticShapes(image_size=128, length=8).batch(range(8))["mask"].mean((1, 2, 3))
    assert torch.allclose(small, large, atol=0.02)


def test_dataloader_uses_batched_fetch():
    data = SyntheticShapes(split="test", image_size=32, length=10)
    batches = list(torch.utils.data.DataLoader(data, batch_size=4))
    assert [b["image"].shape[0] for b in batches] == [4, 4, 2]
    assert torch.equal(batches[1]["image"][0], data[4]["image"])
    assert batches[2]["index"].tolist() == [8, 9]


def _two_means_iou(image: np.ndarray, truth: np.ndarray) -> float:
    pixels = image.reshape(3, -1).T.astype(np.float64)
    lum = pixels.sum(1)
    centres = np.stack([pixels[lum.argmin()], pixels[lum.argmax()]])
    for _ in range(15):
        labels = ((pixels[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        for j in range(2):
            if (labels == j).any():
                centres[j] = pixels[labels == j].mean(0)
    pred = labels.reshape(truth.shape).astype(bool)
    return max(((p & truth).sum() / max((p | truth).sum(), 1)) for p in (pred, ~pred))


def test_not_solvable_by_per_image_colour_clustering():
    """A fair test: per-image two-colour k-means falls well short of a perfect IoU."""
    data = SyntheticShapes(split="test", image_size=32, length=96)
    batch = data.batch(range(96))
    truth = batch["mask"][:, 0].numpy() > 0.5
    ious = [_two_means_iou(batch["image"][i].numpy(), truth[i]) for i in range(96)]
    assert np.mean(ious) < 0.7


def test_background_is_independent_of_the_object():
    """Object colour statistics do not predict the background's (correlation near 0)."""
    data = SyntheticShapes(split="train", image_size=32, length=600)
    layers = data.render(range(600))
    obj = layers["objects"][:, 0].mean((2, 3))
    bg = layers["background"].mean((2, 3))
    for c in range(3):
        assert abs(np.corrcoef(obj[:, c], bg[:, c])[0, 1]) < 0.15
