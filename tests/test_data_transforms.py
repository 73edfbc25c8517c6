"""The official preprocessing (spec section 4): geometry, value range, file errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data_fakes import gradient_image
from redo_lib.data import CorruptFileError, DatasetError, MissingDataError
from redo_lib.data.transforms import (
    center_crop_box,
    check_same_size,
    first_channel_unit,
    image_to_tensor,
    mask_to_tensor,
    open_image,
    resize_and_crop,
    resized_size,
)


@pytest.mark.parametrize("width,height", [(500, 375), (375, 500), (250, 250), (97, 61), (61, 97), (129, 128)])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_geometry_matches_torchvision(width, height, size):
    """Same pixels as the official Resize(S, NEAREST) -> CenterCrop(S) -> ToTensor -> *2-1."""
    import torchvision.transforms as T

    image = Image.fromarray(gradient_image(width, height, 1))
    official = T.Compose([T.Resize(size, T.InterpolationMode.NEAREST), T.CenterCrop(size), T.ToTensor()])(image) * 2 - 1
    ours = image_to_tensor(resize_and_crop(image, size))
    assert ours.shape == (3, size, size) and ours.dtype == torch.float32
    assert torch.equal(ours, official)


def test_shorter_side_and_centre_crop_by_hand():
    assert resized_size(96, 48, 24) == (48, 24)
    assert resized_size(48, 96, 24) == (24, 48)
    assert resized_size(100, 30, 10) == (33, 10)  # int(10 * 100 / 30) = 33, truncated
    assert center_crop_box(48, 24, 24) == (12, 0, 36, 24)
    assert center_crop_box(33, 10, 10) == (12, 0, 22, 10)  # round(11.5) = 12 (half to even)


def test_mask_follows_the_image_geometry():
    # 96 x 48 image, object at x in [32, 64), y in [16, 48) -> S = 24: scale 1/2, crop left 12
    mask = np.zeros((48, 96), bool)
    mask[16:48, 32:64] = True
    out = mask_to_tensor(mask, 24)
    expected = torch.zeros(1, 24, 24)
    expected[0, 8:24, 4:20] = 1
    assert out.dtype == torch.float32 and torch.equal(out, expected)


def test_values_in_range_and_exact_endpoints():
    array = np.zeros((8, 8, 3), np.uint8)
    array[:4] = 255
    out = image_to_tensor(Image.fromarray(array))
    assert out.min() == -1 and out.max() == 1


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA", "LA", "I;16"])
def test_any_mode_becomes_rgb(mode):
    image = Image.fromarray(gradient_image(16, 12)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image).astype(np.uint16) * 257))
    out = image_to_tensor(resize_and_crop(image, 8))
    assert out.shape == (3, 8, 8) and out.min() >= -1 and out.max() <= 1


def test_first_channel_unit():
    assert first_channel_unit(Image.fromarray(np.array([[0, 128, 255]], np.uint8))).tolist() == [[0.0, np.float32(128) / np.float32(255), 1.0]]
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1, 0] = 255
    rgb[0, 0, 1] = 255  # only the first channel counts
    assert first_channel_unit(Image.fromarray(rgb)).tolist() == [[0.0, 1.0]]
    assert first_channel_unit(Image.fromarray(np.array([[0, 65535]], np.uint16))).tolist() == [[0.0, 1.0]]


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(MissingDataError, match="nothere.jpg"):
        open_image(tmp_path / "nothere.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(CorruptFileError, match="junk.jpg"):
        open_image(tmp_path / "junk.jpg")
    Image.fromarray(gradient_image(64, 64)).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="cut.jpg"):
        open_image(tmp_path / "cut.jpg")


def test_size_mismatch_names_both_files():
    with pytest.raises(DatasetError, match=r"a\.jpg is 10x20 but .*b\.png is 10x21"):
        check_same_size("a.jpg", (10, 20), "b.png", (10, 21))
