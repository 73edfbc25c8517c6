"""The ``folder`` data set: a user's images, optional masks and split files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from redo_lib.data import DatasetError, ImageFolder, MissingDataError, UnknownNameError, load_dataset
from redo_lib.data.folder import hash_split
from tests.data_fakes import make_folder


def test_hash_split_is_stable_and_about_80_10_10():
    stems = [f"img{i}" for i in range(3000)]
    splits = [hash_split(s) for s in stems]
    fractions = {name: splits.count(name) / len(stems) for name in ("train", "val", "test")}
    assert abs(fractions["train"] - 0.8) < 0.03 and abs(fractions["val"] - 0.1) < 0.02
    assert [hash_split(s) for s in stems] == splits  # deterministic, per stem


def test_automatic_split_covers_everything_once(tmp_path):
    stems = [f"s{i:02d}" for i in range(30)]
    make_folder(tmp_path, stems=stems, masks=False)
    seen = []
    for split in ("train", "val", "test"):
        seen += [s.image.stem for s in ImageFolder(tmp_path, split).samples]
    assert sorted(seen) == stems
    assert len(load_dataset("folder", tmp_path, "all", image_size=16)) == 30
    # adding images does not move the others
    before = [s.image.stem for s in ImageFolder(tmp_path, "val").samples]
    make_folder(tmp_path, stems=[f"new{i}" for i in range(10)], masks=False)
    after = [s.image.stem for s in ImageFolder(tmp_path, "val").samples]
    assert set(before) <= set(after)


def test_masks_threshold_and_geometry(tmp_path):
    make_folder(tmp_path, stems=["a", "b"], splits={"train": ["a"], "val": ["b"], "test": ["a", "b"]}, size=(48, 32))
    data = load_dataset("folder", tmp_path, "test", image_size=16)
    assert len(data) == 2 and data.has_masks and data.n_regions == 2
    item = data[1]
    assert item["image"].shape == (3, 16, 16) and item["image"].min() >= -1 and item["image"].max() <= 1
    # 48 x 32 -> 24 x 16 (nearest keeps odd pixels), crop 4 columns on the left
    full = np.zeros((32, 48), bool)
    full[8:24, 16:32] = True  # value 200; the 127 block is background
    expected = torch.from_numpy(full[1::2, 1::2][:, 4:20]).float()
    assert torch.equal(item["mask"][0], expected)


def test_split_files_are_used_in_order(tmp_path):
    make_folder(tmp_path, stems=["a", "b", "c"], masks=False, splits={"train": ["c", "a"], "val": ["b"], "test": ["b"]})
    data = ImageFolder(tmp_path, "train", image_size=8)
    assert [s.image.stem for s in data.samples] == ["c", "a"] and not data.has_masks
    assert "mask" not in data[0]


def test_folder_errors(tmp_path):
    with pytest.raises(MissingDataError, match="images/<stem>"):
        load_dataset("folder", tmp_path / "none", "train")
    make_folder(tmp_path, stems=["a", "b", "c"], splits={"train": ["a", "zz"], "val": ["b"]})
    with pytest.raises(MissingDataError, match="zz"):
        ImageFolder(tmp_path, "train")
    with pytest.raises(MissingDataError, match="no test.txt"):
        ImageFolder(tmp_path, "test")
    with pytest.raises(UnknownNameError, match="train, val, test, all"):
        ImageFolder(tmp_path, "holdout")
    (tmp_path / "masks" / "b.png").unlink()
    (tmp_path / "splits" / "val.txt").write_text("b\nc\n")
    with pytest.raises(DatasetError, match=r"1 of 2 images have no mask .*\(e\.g\. b\)"):
        ImageFolder(tmp_path, "val")
    Image.new("L", (10, 10)).save(tmp_path / "masks" / "b.png")
    (tmp_path / "splits" / "val.txt").write_text("b\n")
    with pytest.raises(DatasetError, match=r"b\.jpg is 48x32 but .*b\.png is 10x10"):
        ImageFolder(tmp_path, "val")[0]
