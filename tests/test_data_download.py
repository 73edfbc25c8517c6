"""Downloads against a local HTTP server (127.0.0.1 only): resume, checksums, atomicity."""
from __future__ import annotations

import errno
import io
import socket
import tarfile
from pathlib import Path
from typing import Dict, List

import pytest

import redo_lib.data.download as download_module
from redo_lib.data import ChecksumError, DownloadError, download_dataset, load_dataset
from redo_lib.data.download import extract_archive, fetch
from redo_lib.data.sources import RemoteFile, Source
from tests.data_fakes import FakeServer, fake_flowers_source


pytestmark = pytest.mark.usefixtures("no_proxy")


@pytest.fixture()
def flowers_files(tmp_path_factory):
    """Fake 102flowers.tgz, 102segmentations.tgz and setid.mat, and a Source describing them."""
    return fake_flowers_source(tmp_path_factory.mktemp("fake-flowers"))


@pytest.fixture()
def server(flowers_files):
    fake = FakeServer(flowers_files[0])
    yield fake
    fake.close()


def _entries(root: Path) -> List[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_download_extract_and_second_run_downloads_nothing(tmp_path, flowers_files, server):
    _, source = flowers_files
    root = tmp_path / "flowers"
    report = download_dataset(source, root, mirror=server.url, progress=False)
    assert sorted(report.downloaded) == ["102flowers.tgz", "102segmentations.tgz", "setid.mat"]
    assert sorted(p.name for p in root.iterdir()) == ["jpg", "segmim", "setid.mat"]  # no archives, no temp dirs
    assert {s: len(load_dataset("flowers", root, s, image_size=16)) for s in ("train", "val", "test")} == {
        "train": 4, "val": 1, "test": 2}
    server.log.clear()
    report = download_dataset(source, root, mirror=server.url, progress=False)
    assert server.log == [] and report.downloaded == [] and len(report.skipped) == 3


def test_resume_after_a_cut_connection(tmp_path, flowers_files, server):
    files, source = flowers_files
    root = tmp_path / "flowers"
    server.cut["102flowers.tgz"] = 300
    with pytest.raises(DownloadError, match=r"run the same command again to resume") as info:
        download_dataset(source, root, mirror=server.url, progress=False)
    assert not isinstance(info.value, ChecksumError)
    part = root / ".downloads" / "102flowers.tgz.part"
    assert part.stat().st_size == 300  # kept for resuming
    assert not (root / "jpg").exists()
    server.log.clear()
    download_dataset(source, root, mirror=server.url, progress=False)
    assert server.log[0] == ("102flowers.tgz", "bytes=300-")  # only the remaining bytes
    assert (root / "jpg" / "image_00007.jpg").is_file()
    assert not (root / ".downloads").exists()


def test_checksum_mismatch_leaves_nothing_in_the_root(tmp_path, flowers_files, server):
    files, source = flowers_files
    bad = Source(source.name, source.loader, (
        RemoteFile("102flowers.tgz", "http://invalid.example/a.tgz", "0" * 32, None, provides=("jpg",), extract=""),
    ) + source.files[1:], "")
    root = tmp_path / "flowers"
    with pytest.raises(ChecksumError, match=r"102flowers\.tgz: MD5 mismatch.*deleted"):
        download_dataset(bad, root, mirror=server.url, progress=False)
    assert not root.exists()  # no .part, no archive, no partial extraction, no empty folder


def test_server_ignoring_range_restarts_cleanly(tmp_path, flowers_files, server):
    files, source = flowers_files
    root = tmp_path / "flowers"
    server.cut["setid.mat"] = 10
    with pytest.raises(DownloadError):
        download_dataset(source, root, mirror=server.url, progress=False)
    server.ignore_range = True
    download_dataset(source, root, mirror=server.url, progress=False)
    assert (root / "setid.mat").read_bytes() == files["setid.mat"]


def test_http_errors_are_clear(tmp_path, server):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{server.url}/missing.bin", tmp_path / "missing.bin")
    assert not (tmp_path / "missing.bin.part").exists()
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    closed = port.getsockname()[1]
    port.close()
    with pytest.raises(DownloadError, match="cannot download"):
        fetch(f"http://127.0.0.1:{closed}/x", tmp_path / "x", timeout=2)


def test_full_disk_keeps_the_part_file(tmp_path, server, monkeypatch):
    class FullDisk(io.FileIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(download_module, "open", lambda path, mode: FullDisk(path, mode.replace("b", "")), raising=False)
    dest = tmp_path / "102flowers.tgz"
    with pytest.raises(DownloadError, match="disk full.*resume"):
        fetch(f"{server.url}/102flowers.tgz", dest, progress=False)
    assert (tmp_path / "102flowers.tgz.part").exists() and not dest.exists()


def _tar(members: Dict[str, bytes], links: Dict[str, str] = {}) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


@pytest.mark.parametrize("members,links", [
    ({"jpg/a.jpg": b"x", "../evil.txt": b"x"}, {}),
    ({"/tmp/evil.txt": b"x", "jpg/a.jpg": b"x"}, {}),
    ({"jpg/a.jpg": b"x"}, {"jpg/link": "../../outside"}),
])
def test_unsafe_archives_are_refused(tmp_path, members, links):
    archive = tmp_path / "bad.tgz"
    archive.write_bytes(_tar(members, links))
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="refusing to extract"):
        extract_archive(archive, root, "", ["jpg"])
    assert _entries(root) == [] and not (tmp_path / "evil.txt").exists()


def test_archive_without_the_expected_content_changes_nothing(tmp_path):
    archive = tmp_path / "a.tgz"
    archive.write_bytes(_tar({"other/a.jpg": b"x"}))
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="does not contain the expected jpg"):
        extract_archive(archive, root, "", ["jpg"])
    assert _entries(root) == []


def test_strip_prefix_and_replace(tmp_path):
    archive = tmp_path / "cub.tgz"
    archive.write_bytes(_tar({"CUB_200_2011/images.txt": b"1 a/b.jpg\n", "CUB_200_2011/images/a/b.jpg": b"x",
                              "attributes.txt": b"ignored"}))
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "images" / "stale.jpg").write_bytes(b"old")
    moved = extract_archive(archive, root, "CUB_200_2011/", ["images", "images.txt"])
    assert moved == ["images", "images.txt"]
    assert _entries(root) == ["images", "images.txt", "images/a", "images/a/b.jpg"]


def test_plain_files_into_a_subfolder_then_loadable(tmp_path):
    """MNIST-style source: gz files kept as they are under MNIST/raw, then read by cmnist."""
    from redo_lib.data import ColoredMNIST
    from tests.data_fakes import make_mnist, md5

    work = tmp_path / "work"
    make_mnist(work, n_train=30, n_test=20)
    raw = work / "MNIST" / "raw"
    files = {p.name: p.read_bytes() for p in raw.iterdir()}
    source = Source("mnist", "cmnist", tuple(
        RemoteFile(name, "http://invalid.example/" + name, md5(data), len(data), dest="MNIST/raw",
                   provides=(f"MNIST/raw/{name}|MNIST/raw/{name[:-3]}",))
        for name, data in sorted(files.items())), "")
    fake = FakeServer(files)
    try:
        root = tmp_path / "mnist"
        download_dataset(source, root, mirror=fake.url + "/", progress=False)
        assert len(ColoredMNIST(root, "test", image_size=32)) == 20
        # torchvision's uncompressed files count as present too
        for gz in (root / "MNIST" / "raw").iterdir():
            gz.with_suffix("").write_bytes(b"")
            gz.unlink()
        fake.log.clear()
        assert download_dataset(source, root, mirror=fake.url, progress=False).downloaded == []
        assert fake.log == []
    finally:
        fake.close()


def test_official_source_table_is_well_formed():
    from redo_lib.data.download import get_source
    from redo_lib.data.sources import REDO_SPLITS_URL, SOURCES

    for name in ("flowers", "lfw", "cub", "mnist"):
        source = get_source(name)
        names = [f.name for f in source.files]
        assert len(names) == len(set(names))
        for remote in source.files:
            assert remote.url.startswith(("https://", "http://")) and remote.provides
            assert remote.md5 is None or (len(remote.md5) == 32 and int(remote.md5, 16) >= 0)
    assert SOURCES["cmnist"] is SOURCES["mnist"]
    lfw = {f.name: f.url for f in get_source("lfw").files}
    assert lfw["train.txt"] == f"{REDO_SPLITS_URL}/lfw-funneled/train.txt"
    assert lfw["test.txt"] == f"{REDO_SPLITS_URL}/LFW/test.txt"
    cub = {f.name: f.url for f in get_source("cub").files}
    assert cub["train_val_test_split.txt"] == f"{REDO_SPLITS_URL}/cub/train_val_test_split.txt"
    with pytest.raises(ValueError, match="flowers, lfw, cub, mnist"):
        get_source("imagenet")
