"""The ladder of difficulty: flat colours up to the textured shapes, and font-drawn digits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from redo_lib.data import SYNTHETIC_NAMES, SyntheticShapes, load_dataset
from redo_lib.data import glyphs
from redo_lib.data.synthetic import LEVELS, dataset_name, parse_dataset_name

LADDER = ["synthetic-flat", "synthetic-gradient", "synthetic-soft", "synthetic"]


def test_names_round_trip_and_are_registered():
    for objects in ("shapes", "digits"):
        for level in LEVELS:
            name = dataset_name(level, objects)
            assert parse_dataset_name(name) == (level, objects)
            assert name in SYNTHETIC_NAMES
    assert dataset_name("textured") == "synthetic"  # the original data set keeps its name
    with pytest.raises(ValueError, match="not a synthetic data set"):
        parse_dataset_name("flowers")
    with pytest.raises(ValueError, match="flat, gradient, soft, textured"):
        SyntheticShapes(level="shiny")


@pytest.mark.parametrize("k", [2, 3])
def test_same_shapes_at_every_level(k):
    masks = [load_dataset(n, None, "val", image_size=32, n_regions=k, length=16).batch(range(16))["mask"]
             for n in LADDER]
    for mask in masks[1:]:
        assert torch.equal(mask, masks[0])
    images = [load_dataset(n, None, "val", image_size=32, n_regions=k, length=16).batch(range(16))["image"]
              for n in LADDER]
    assert not torch.equal(images[0], images[1])


@pytest.mark.parametrize("objects", ["shapes", "digits"])
@pytest.mark.parametrize("k", [2, 3])
def test_flat_level_has_one_colour_per_region(objects, k):
    data = SyntheticShapes(split="test", image_size=32, n_regions=k, level="flat", objects=objects, length=24)
    batch = data.batch(range(24))
    image, mask = batch["image"].numpy(), batch["mask"].numpy() > 0.5
    regions = [mask[:, 0], ~mask[:, 0]] if k == 2 else [mask[:, 0], mask[:, 1], mask[:, 2]]
    for i in range(24):
        colours = []
        for region in regions:
            pixels = image[i][:, region[i]]
            if pixels.size == 0:
                continue
            assert np.ptp(pixels, axis=1).max() < 1e-6  # exactly one colour in the region
            colours.append(pixels[:, 0])
        for a in range(len(colours)):  # distinct colours: the segmentation is well posed
            for b in range(a + 1, len(colours)):
                assert np.linalg.norm(colours[a] - colours[b]) >= LEVELS["flat"].distinct - 1e-6 or \
                    np.linalg.norm(colours[a] - colours[b]) > 0.25


def test_levels_grow_in_texture():
    """Within-region colour spread increases up the ladder (what makes the levels harder)."""
    spreads = []
    for name in LADDER:
        batch = load_dataset(name, None, "val", image_size=32, length=64).batch(range(64))
        obj = batch["mask"][:, 0:1] > 0.5
        image = batch["image"]
        inside = [image[i][:, obj[i, 0]].std(1).mean().item() for i in range(64)]
        outside = [image[i][:, ~obj[i, 0]].std(1).mean().item() for i in range(64)]
        spreads.append(np.mean(inside) + np.mean(outside))
    assert spreads[0] < 1e-6
    assert all(a < b for a, b in zip(spreads, spreads[1:])), spreads


@pytest.mark.parametrize("k", [2, 3])
def test_digits_are_the_stated_digits_and_deterministic(k):
    a = SyntheticShapes(split="train", image_size=64, n_regions=k, objects="digits", level="flat", length=40)
    b = SyntheticShapes(split="train", image_size=64, n_regions=k, objects="digits", level="flat", length=40)
    first, second = a.batch(range(40)), b.batch(range(40))
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["mask"], second["mask"])
    fractions = first["mask"][:, : k - 1].mean((2, 3))
    assert fractions.min() > 0.02 and fractions.max() < 0.4  # strokes, not boxes
    if k == 3:
        assert torch.equal(first["mask"].sum(1), torch.ones(40, 64, 64))  # one-hot, background last


def test_digit_outline_has_holes():
    """An 8 has two holes: its centre of each loop is outside the glyph."""
    inside, _ = glyphs.rasterise_digits(64, np.array([8, 1]), np.array([[0.5, 0.5], [0.5, 0.5]]),
                                        np.array([0.8, 0.8]), np.zeros(2), np.zeros(2), np.ones(2))
    eight = inside[0]
    column = eight[:, 32]
    # going down the middle column of an 8: stroke, hole, stroke, hole, stroke
    changes = np.flatnonzero(np.diff(column.astype(int)))
    assert len(changes) == 6
    assert inside[1].sum() < eight.sum()  # a 1 has less ink than an 8
    with pytest.raises(ValueError, match="0..9"):
        glyphs.digit_outline(12)


def test_missing_font_names_what_to_install(monkeypatch):
    import matplotlib.font_manager as fm

    def no_font(*args, **kwargs):
        raise ValueError("Failed to find font")

    glyphs._font_properties.cache_clear()
    glyphs.digit_outline.cache_clear()
    glyphs._contours.cache_clear()
    monkeypatch.setattr(fm, "findfont", no_font)
    try:
        with pytest.raises(glyphs.FontNotFoundError, match="DejaVu Sans.*matplotlib"):
            SyntheticShapes(split="val", image_size=32, objects="digits", length=4).batch(range(4))
    finally:
        glyphs._font_properties.cache_clear()
        glyphs.digit_outline.cache_clear()
    glyphs._contours.cache_clear()
