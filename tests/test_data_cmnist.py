"""Colored-2-MNIST built from fake idx files (spec section 6)."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from redo_lib.data import ColoredMNIST, CorruptFileError, MissingDataError, load_dataset
from redo_lib.data.cmnist import read_mnist_images, read_mnist_labels
from tests.data_fakes import idx_bytes, make_mnist


@pytest.fixture()
def mnist_root(tmp_path):
    make_mnist(tmp_path, n_train=30, n_test=20)
    return tmp_path


def test_torchvision_reader_plain_and_gz(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([3, 0, 7], dtype=np.uint8)
    (tmp_path / "a").write_bytes(idx_bytes(images))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "l.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    for name in ("a", "a.gz"):
        read = read_mnist_images(tmp_path / name)
        assert read.dtype == np.uint8 and np.array_equal(read, images)
    read = read_mnist_labels(tmp_path / "l.gz")
    assert read.dtype == np.uint8 and np.array_equal(read, labels)


def test_corrupt_files_are_named(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "cut").write_bytes(idx_bytes(images)[:-5])
    with pytest.raises(CorruptFileError, match=r"cut is not a valid MNIST image file"):
        read_mnist_images(tmp_path / "cut")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(CorruptFileError, match=r"bad is not a valid MNIST image file.*bad magic"):
        read_mnist_images(tmp_path / "bad")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        read_mnist_labels(tmp_path / "empty")
    (tmp_path / "images-as-labels").write_bytes(idx_bytes(images))  # 3 dimensions, not 1
    with pytest.raises(CorruptFileError, match="images-as-labels is not a valid MNIST label file"):
        read_mnist_labels(tmp_path / "images-as-labels")
    (tmp_path / "broken.gz").write_bytes(b"not gzip at all")
    with pytest.raises(CorruptFileError, match="broken.gz"):
        read_mnist_images(tmp_path / "broken.gz")
    with pytest.raises(MissingDataError, match="absent"):
        read_mnist_images(tmp_path / "absent")


def test_corrupt_file_in_the_data_set_is_named(tmp_path):
    make_mnist(tmp_path)
    victim = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    victim.write_bytes(gzip.compress(gzip.decompress(victim.read_bytes())[:-100]))
    with pytest.raises(CorruptFileError, match="t10k-images-idx3-ubyte.gz"):
        ColoredMNIST(tmp_path, "test", image_size=32)
    assert len(ColoredMNIST(tmp_path, "train", image_size=32, val_size=10)) == 20  # other files unaffected


def test_reads_through_torchvision(monkeypatch, tmp_path):
    """The files go through torchvision's readers (no second idx parser in the package)."""
    import torchvision.datasets.mnist as tv_mnist

    make_mnist(tmp_path, compress=False)
    calls = []
    for name in ("read_image_file", "read_label_file"):
        original = getattr(tv_mnist, name)
        monkeypatch.setattr(tv_mnist, name, lambda path, _f=original, _n=name: calls.append(_n) or _f(path))
    ColoredMNIST(tmp_path, "test", image_size=32)
    assert sorted(calls) == ["read_image_file", "read_label_file"]


@pytest.mark.parametrize("size,digit", [(32, 14), (64, 28), (128, 56)])
def test_items_are_one_hot_and_in_range(mnist_root, size, digit):
    data = load_dataset("cmnist", mnist_root, "train", image_size=size, val_size=10)
    assert data.n_regions == 3 and data.has_masks and data.digit_size == digit
    batch = data.batch(range(6))
    image, mask = batch["image"], batch["mask"]
    assert image.shape == (6, 3, size, size) and mask.shape == (6, 3, size, size)
    assert image.min() >= -1 and image.max() <= 1
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mask.sum(1), torch.ones(6, size, size))
    # each digit region is visible and painted in its colour; background is grey-ish R = G
    colours = (image + 1) / 2
    for k in range(6):
        bg = colours[k][:, mask[k, 2] == 1]
        assert torch.allclose(bg[0], bg[1]) and bg.min() >= 0.33 - 1e-6 and bg.max() <= 0.66 + 1e-6
        dark = colours[k][:, mask[k, 0] == 1]
        light = colours[k][:, mask[k, 1] == 1]
        assert dark.shape[1] > 0 and light.shape[1] > 0
        assert dark.max() <= 0.33 + 1e-6 and torch.allclose(dark[1], dark[2])
        assert light.min() >= 0.66 - 1e-6 and torch.allclose(light[0], light[2])


def test_deterministic_and_split_dependent(mnist_root):
    a = ColoredMNIST(mnist_root, "train", image_size=32, seed=3, val_size=10)
    b = ColoredMNIST(mnist_root, "train", image_size=32, seed=3, val_size=10)
    assert torch.equal(a[4]["image"], b[4]["image"]) and torch.equal(a[4]["mask"], b[4]["mask"])
    assert torch.equal(a.batch([4, 1])["image"][0], a[4]["image"])  # batch == items
    c = ColoredMNIST(mnist_root, "train", image_size=32, seed=4, val_size=10)
    assert not torch.equal(a[4]["image"], c[4]["image"])
    test = ColoredMNIST(mnist_root, "test", image_size=32, seed=3)
    assert not torch.equal(a[4]["image"], test[4]["image"])


def test_split_pools_and_lengths(mnist_root):
    sizes = {s: len(load_dataset("cmnist", mnist_root, s, image_size=32, val_size=10)) for s in ("train", "val", "test")}
    assert sizes == {"train": 20, "val": 10, "test": 20}
    assert len(load_dataset("cmnist", mnist_root, "train", image_size=32, val_size=10, length=7)) == 7


def test_uncompressed_files_work(tmp_path):
    make_mnist(tmp_path, compress=False)
    assert len(ColoredMNIST(tmp_path, "test", image_size=32)) == 20


def test_missing_mnist_names_the_download_command(tmp_path):
    with pytest.raises(MissingDataError, match=r"redo data download mnist --root"):
        load_dataset("cmnist", tmp_path, "train")


def test_dataloader_batches(mnist_root):
    data = load_dataset("cmnist", mnist_root, "val", image_size=32, val_size=10)
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["index"].tolist() == [0, 1, 2, 3]
    assert torch.equal(batch["mask"][2], data[2]["mask"])
