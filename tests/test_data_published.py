"""Flowers, LFW and CUB loaders on tiny fakes in the exact published on-disk formats."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from redo_lib.data import (
    CUB,
    LFW,
    DatasetError,
    Flowers,
    MissingDataError,
    UnknownNameError,
    CorruptFileError,
    load_dataset,
)
from redo_lib.data.flowers import flowers_foreground
from redo_lib.data.lfw import lfw_foreground
from tests.data_fakes import (
    BLUE,
    cub_segmentation,
    lfw_expected_foreground,
    lfw_parts,
    make_cub,
    make_flowers,
    make_lfw,
)


def _check_item(item, size, with_mask=True):
    image = item["image"]
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert image.min() >= -1 and image.max() <= 1
    if with_mask:
        mask = item["mask"]
        assert mask.shape == (1, size, size) and mask.dtype == torch.float32
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
    else:
        assert "mask" not in item
    assert isinstance(item["index"], int)


# ------------------------------------------------------------------------------ Flowers
def test_flowers_official_split_mapping(tmp_path):
    make_flowers(tmp_path, {"trnid": [1, 2], "valid": [3], "tstid": [4, 5, 6]})
    counts = {s: len(load_dataset("flowers", tmp_path, s, image_size=24)) for s in ("train", "val", "test")}
    # train = tstid, val = valid, test = trnid (official ReDO mapping)
    assert counts == {"train": 3, "val": 1, "test": 2}
    train = load_dataset("flowers", tmp_path, "train", image_size=24)
    assert [s.image.name for s in train.samples] == ["image_00004.jpg", "image_00005.jpg", "image_00006.jpg"]
    assert train.n_regions == 2 and train.has_masks


def test_flowers_mask_geometry_by_hand(tmp_path):
    # 96 x 48 images, flower block x in [32, 64), y in [16, 48); S = 24: halve, crop 12 on the left
    make_flowers(tmp_path, size=(96, 48), box=(32, 16, 64, 48))
    item = load_dataset("flowers", tmp_path, "val", image_size=24)[0]
    _check_item(item, 24)
    expected = torch.zeros(1, 24, 24)
    expected[0, 8:24, 4:20] = 1
    assert torch.equal(item["mask"], expected)
    # the image went through the same geometry: flower colour exactly where the mask is 1
    red = item["image"][0]
    assert (red[expected[0] == 1] > 0.5).all() and (red[expected[0] == 0] < -0.5).all()


def test_flowers_mask_rules():
    seg = np.array([[BLUE, (0, 50, 100), (50, 0, 100), (50, 60, 254), (3, 2, 250), (200, 120, 60)]], np.uint8)
    # official: background if R == 0 or G == 0 or B == 254
    assert flowers_foreground(seg, "official").tolist() == [[False, False, False, False, True, True]]
    # blue: close to pure blue in every channel
    assert flowers_foreground(seg, "blue").tolist() == [[False, True, True, True, False, True]]
    with pytest.raises(ValueError, match="official, blue"):
        flowers_foreground(seg, "red")


def test_flowers_missing_files_give_the_download_command(tmp_path):
    with pytest.raises(MissingDataError, match=r"redo data download flowers --root .*nothing"):
        load_dataset("flowers", tmp_path / "nothing", "train")
    make_flowers(tmp_path)
    (tmp_path / "segmim" / "segmim_00005.jpg").unlink()
    with pytest.raises(MissingDataError, match=r"segmim_00005\.jpg.*redo data download flowers --root"):
        load_dataset("flowers", tmp_path, "train")


def test_flowers_corrupt_and_mismatched_files(tmp_path):
    make_flowers(tmp_path)
    (tmp_path / "jpg" / "image_00003.jpg").write_bytes(b"\xff\xd8\xff garbage")
    val = load_dataset("flowers", tmp_path, "val", image_size=16)
    with pytest.raises(CorruptFileError, match="image_00003.jpg"):
        val[0]
    Image.new("RGB", (50, 48), BLUE).save(tmp_path / "segmim" / "segmim_00001.jpg")
    test = load_dataset("flowers", tmp_path, "test", image_size=16)
    with pytest.raises(DatasetError, match=r"image_00001\.jpg is 96x48 but .*segmim_00001\.jpg is 50x48"):
        test[0]


def test_unknown_names_and_splits_list_the_valid_ones(tmp_path):
    with pytest.raises(UnknownNameError, match="flowers, lfw, cub, cmnist, folder, synthetic"):
        load_dataset("imagenet", tmp_path, "train")
    with pytest.raises(UnknownNameError, match="train, val, test"):
        load_dataset("flowers", tmp_path, "validation")
    with pytest.raises(ValueError):  # UnknownNameError is also a ValueError
        Flowers(tmp_path, "dev")


# ------------------------------------------------------------------------------ LFW
def test_lfw_splits_and_masks(tmp_path):
    splits = make_lfw(tmp_path, size=64)
    train = load_dataset("lfw", tmp_path, "train", image_size=32)
    assert len(train) == 3 and not train.has_masks
    _check_item(train[0], 32, with_mask=False)  # no placeholder mask at all
    for split in ("val", "test"):
        dataset = load_dataset("lfw", tmp_path, split, image_size=32)
        assert len(dataset) == len(splits[split]) and dataset.has_masks
        item = dataset[0]
        _check_item(item, 32)
        expected = lfw_expected_foreground(64)[::2, ::2]  # 64 -> 32: nearest keeps odd pixels, same blocks
        assert torch.equal(item["mask"][0], torch.from_numpy(expected).float())


def test_lfw_rule_blue_is_background():
    parts = lfw_parts(8)
    assert lfw_foreground(parts).tolist() == lfw_expected_foreground(8).tolist()
    assert lfw_foreground(np.array([[[0, 0, 127], [0, 0, 128]]], np.uint8)).tolist() == [[True, False]]


def test_lfw_missing_split_file_and_parts(tmp_path):
    make_lfw(tmp_path)
    (tmp_path / "test.txt").unlink()
    with pytest.raises(MissingDataError, match=r"test\.txt.*redo data download lfw --root"):
        LFW(tmp_path, "test")
    (tmp_path / "val.txt").write_text("Carol_King\n")
    with pytest.raises(DatasetError, match=r"val\.txt line 1"):
        LFW(tmp_path, "val")


# ------------------------------------------------------------------------------ CUB
def test_cub_splits_modes_and_threshold(tmp_path):
    relpaths = make_cub(tmp_path, codes=(0, 0, 1, 2, 0, 2), size=(64, 48))
    sizes = {s: len(load_dataset("cub", tmp_path, s, image_size=48)) for s in ("train", "val", "test")}
    assert sizes == {"train": 3, "val": 1, "test": 2}
    train = load_dataset("cub", tmp_path, "train", image_size=48)
    assert [s.image.relative_to(tmp_path / "images").as_posix() for s in train.samples] == [
        relpaths[0], relpaths[1], relpaths[4]
    ]
    # item 1 is a grayscale JPEG, item 2 (id 5) a CMYK one: both come out RGB
    for item in (train[0], train[1], train[2]):
        _check_item(item, 48)
    # 64 x 48, S = 48: no resize, crop 8 columns on the left; 128 counts, 127 does not
    expected = torch.from_numpy(cub_segmentation(64, 48)[:, 8:56] >= 128).float()
    assert torch.equal(train[0]["mask"][0], expected)
    gray = train[1]["image"]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_cub_mismatched_id_lists(tmp_path):
    make_cub(tmp_path)
    (tmp_path / "train_val_test_split.txt").write_text("1 0\n2 0\n")
    with pytest.raises(DatasetError, match="different image ids"):
        CUB(tmp_path, "train")


def test_cub_missing_segmentation_dir(tmp_path):
    make_cub(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "segmentations")
    with pytest.raises(MissingDataError, match=r"segmentations.*redo data download cub --root"):
        load_dataset("cub", tmp_path, "val")
