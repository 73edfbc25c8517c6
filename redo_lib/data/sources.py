"""Where the published data sets come from: URLs, sizes, MD5 checksums, archive layouts.

Checksums are enforced by :mod:`redo_lib.data.download`. Where a value is ``None`` we do
not know it for sure and only the known values are verified (each gap is commented).
Nothing here is mutable at run time: the tables are tuples of frozen dataclasses.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping, Optional, Tuple

__all__ = ["RemoteFile", "Source", "SOURCES", "EXPECTED_COUNTS", "REDO_SPLITS_URL"]

#: the official ReDO repository's split files (raw GitHub)
REDO_SPLITS_URL = "https://raw.githubusercontent.com/mickaelChen/ReDO/master/datasplits"


@dataclass(frozen=True)
class RemoteFile:
    """One file to download.

    Attributes:
        name: file name; also the name looked up under ``--mirror URL``.
        url: official URL.
        md5: expected MD5 (``None``: unknown, not verified).
        size: expected size in bytes (``None``: unknown, not verified).
        dest: folder (relative to the data root) where a plain file is stored.
        extract: archives only: the member prefix to strip (``""`` for none); ``None``
            for a plain file that is kept as it is.
        provides: paths (relative to the data root) that exist once the file is in place;
            when they all exist, the file is not downloaded again. ``"a|b"`` means that
            either ``a`` or ``b`` will do.
    """

    name: str
    url: str
    md5: Optional[str]
    size: Optional[int]
    provides: Tuple[str, ...]
    dest: str = ""
    extract: Optional[str] = None


@dataclass(frozen=True)
class Source:
    """All the files of one data set, and the loader name that reads them."""

    name: str
    loader: str
    files: Tuple[RemoteFile, ...]
    homepage: str


_VGG = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102"
_LFW = "http://vis-www.cs.umass.edu/lfw"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist"

FLOWERS = Source(
    name="flowers",
    loader="flowers",
    homepage=f"{_VGG}/",
    files=(
        # MD5s as in torchvision.datasets.Flowers102; sizes not known exactly.
        RemoteFile("102flowers.tgz", f"{_VGG}/102flowers.tgz", "52808999861908f626f3c1f4e79d11fa", None,
                   provides=("jpg",), extract=""),
        # MD5 of 102segmentations.tgz as widely quoted (not in torchvision): the least
        # certain checksum of this table.
        RemoteFile("102segmentations.tgz", f"{_VGG}/102segmentations.tgz", "51375996b6c4f367a4b9f4492d7ecef5", None,
                   provides=("segmim",), extract=""),
        RemoteFile("setid.mat", f"{_VGG}/setid.mat", "a5357ecc9cb78c4bef273ce3793fc85c", None,
                   provides=("setid.mat",)),
    ),
)

LFW = Source(
    name="lfw",
    loader="lfw",
    homepage=f"{_LFW}/",
    files=(
        # MD5 as in torchvision.datasets.LFWPeople ("funneled"); size unknown.
        RemoteFile("lfw-funneled.tgz", f"{_LFW}/lfw-funneled.tgz", "1b42dfed7d15c9b2dd63d5e5840c86ad", None,
                   provides=("lfw_funneled",), extract=""),
        # Part labels of Kae et al.: MD5 and size unknown to us, not verified.
        RemoteFile("parts_lfw_funneled_gt_images.tgz", f"{_LFW}/part_labels/parts_lfw_funneled_gt_images.tgz",
                   None, None, provides=("parts_lfw_funneled_gt_images",), extract=""),
        # ReDO's split files: small text files, MD5 unknown; the layout check counts their lines.
        RemoteFile("train.txt", f"{REDO_SPLITS_URL}/lfw-funneled/train.txt", None, None, provides=("train.txt",)),
        RemoteFile("val.txt", f"{REDO_SPLITS_URL}/lfw-funneled/val.txt", None, None, provides=("val.txt",)),
        RemoteFile("test.txt", f"{REDO_SPLITS_URL}/LFW/test.txt", None, None, provides=("test.txt",)),
    ),
)

CUB = Source(
    name="cub",
    loader="cub",
    homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
    files=(
        # MD5 as in torchvision-style CUB loaders; current CaltechDATA record URL.
        RemoteFile("CUB_200_2011.tgz", "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                   "97eceeb196236b17998738112f37df78", None,
                   provides=("images", "images.txt"), extract="CUB_200_2011/"),
        # Segmentations (CaltechDATA record w9d68-gec53): MD5 and size unknown, not verified.
        RemoteFile("segmentations.tgz", "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz?download=1",
                   None, None, provides=("segmentations",), extract=""),
        # ReDO's split file: MD5 unknown; the layout check compares its ids with images.txt.
        RemoteFile("train_val_test_split.txt", f"{REDO_SPLITS_URL}/cub/train_val_test_split.txt", None, None,
                   provides=("train_val_test_split.txt",)),
    ),
)

MNIST = Source(
    name="mnist",
    loader="cmnist",
    homepage="http://yann.lecun.com/exdb/mnist/",
    files=tuple(
        RemoteFile(f"{stem}.gz", f"{_MNIST}/{stem}.gz", md5, size, dest="MNIST/raw",
                   provides=(f"MNIST/raw/{stem}.gz|MNIST/raw/{stem}",))
        # MD5s as in torchvision.datasets.MNIST; sizes of the classic files.
        for stem, md5, size in (
            ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
            ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432", 28881),
            ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3", 1648877),
            ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c", 4542),
        )
    ),
)

#: downloadable data sets by name (``cmnist`` is an alias of ``mnist``)
SOURCES: Mapping[str, Source] = MappingProxyType(
    {"flowers": FLOWERS, "lfw": LFW, "cub": CUB, "mnist": MNIST, "cmnist": MNIST}
)

#: published split sizes (images, or source digits for cmnist), reported by ``redo data check``
EXPECTED_COUNTS: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "flowers": MappingProxyType({"train": 6149, "val": 1020, "test": 1020}),
        "lfw": MappingProxyType({"train": 10296, "val": 1327, "test": 1600}),
        "cub": MappingProxyType({"train": 10000, "val": 788, "test": 1000}),
        "cmnist": MappingProxyType({"train": 50000, "val": 10000, "test": 10000}),
    }
)
