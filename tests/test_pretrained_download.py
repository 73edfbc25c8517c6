"""The authors' pretrained weights: download, safe extraction and loading of an archive.

The archives of the official Google Drive folder (``flowers_netM_state.tar.gz`` ...) hold
one ``.pth`` file in the official format. We fabricate such an archive (an official F state
dict with random values, from the published key layout, as in ``test_pretrained.py``),
serve it from a local HTTP server on 127.0.0.1 (``tests.data_fakes.FakeServer``, the
server of the data-download tests) and run the whole path: download, extraction, loading
with ``load_official``. The Google Drive branch is checked with a stand-in ``gdown``.
"""
from __future__ import annotations

import io
import sys
import tarfile
import types
from pathlib import Path

import pytest
import torch

from redo_lib.data import DownloadError
from redo_lib.pretrained import (
    OFFICIAL_WEIGHTS_FOLDER,
    OfficialCheckpointError,
    fetch_official_archive,
    load_official,
    load_official_archive,
    official_archive_name,
)
from tests.data_fakes import FakeServer
from tests.test_data_download import _tar
from tests.test_pretrained import fabricate

pytestmark = pytest.mark.usefixtures("no_proxy")

NAME = official_archive_name("flowers", "netM")


def quiet(_message: str) -> None:
    pass


def tar_gz(members: dict) -> bytes:
    """A .tar.gz holding ``members`` (name -> bytes)."""
    return _tar(members)


def saved(checkpoint: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def official_f():
    """An official-format checkpoint holding F only (Flowers options), as in a netM archive.

    The widths of the networks the file does not hold are shrunk in its options, so that
    building the model around F takes milliseconds; F's layout is the official one.
    """
    checkpoint = fabricate("flowers", networks=("netEncM",))
    options = checkpoint["options"]
    options.nfX = options.nfD = options.nfZ = 4
    options.useSelfAttG = options.useSelfAttD = False
    return checkpoint


@pytest.fixture(scope="module")
def expected_f(official_f):
    return load_official(official_f).mask_net.state_dict()


@pytest.fixture()
def archive(official_f):
    return tar_gz({"flowers_netM_state.pth": saved(official_f)})


@pytest.fixture()
def server(archive):
    fake = FakeServer({NAME: archive})
    yield fake
    fake.close()


def same_mask_network(model, expected) -> None:
    loaded = model.mask_net.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_archive_name():
    assert NAME == "flowers_netM_state.tar.gz"
    assert official_archive_name("lfw", "nets") == "lfw_nets_state.tar.gz"
    with pytest.raises(ValueError, match="unknown part"):
        official_archive_name("flowers", "netQ")


def test_http_download_extract_and_load(tmp_path, server, expected_f):
    root = tmp_path / "official"
    model = load_official_archive("flowers", "netM", root, url=f"{server.url}/{NAME}", progress=False, log=quiet)
    assert model.official_networks == ["netEncM"] and not model.training
    same_mask_network(model, expected_f)
    with torch.no_grad():
        masks = model.mask_net(torch.zeros(1, 3, 128, 128).uniform_(-1, 1))
    assert masks.shape == (1, 2, 128, 128)
    # The .pth sits in root/<archive stem>/; the archive and the downloads folder are gone.
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "flowers_netM_state", "flowers_netM_state/flowers_netM_state.pth"]
    assert server.log == [(NAME, None)]

    server.log.clear()  # a second call finds the extracted file and downloads nothing
    path = fetch_official_archive("flowers", "netM", root, url=f"{server.url}/{NAME}", progress=False, log=quiet)
    assert path == root / "flowers_netM_state" / "flowers_netM_state.pth" and server.log == []


def test_cut_download_resumes(tmp_path, server, expected_f):
    root = tmp_path / "official"
    server.cut[NAME] = 1000
    with pytest.raises(DownloadError, match="resume"):
        fetch_official_archive("flowers", "netM", root, url=f"{server.url}/{NAME}", progress=False, log=quiet)
    assert not (root / "flowers_netM_state").exists()
    server.log.clear()
    model = load_official_archive("flowers", "netM", root, url=f"{server.url}/{NAME}", progress=False, log=quiet)
    assert server.log == [(NAME, "bytes=1000-")]  # only the missing bytes
    same_mask_network(model, expected_f)


def test_unsafe_archive_is_refused(tmp_path, official_f):
    evil = tmp_path / NAME
    evil.write_bytes(tar_gz({"../escaped.pth": saved(official_f)}))
    root = tmp_path / "official"
    with pytest.raises(DownloadError, match="unsafe member path"):
        fetch_official_archive("flowers", "netM", root, url=str(evil), log=quiet)
    assert not (tmp_path / "escaped.pth").exists()
    assert not (root / "flowers_netM_state").exists()


def test_archive_without_weights(tmp_path):
    empty = tmp_path / NAME
    empty.write_bytes(tar_gz({"README.txt": b"nothing here"}))
    with pytest.raises(OfficialCheckpointError, match="no .pth file"):
        fetch_official_archive("flowers", "netM", tmp_path / "official", url=empty.as_uri(), log=quiet)
    assert not (tmp_path / "official" / "flowers_netM_state").exists()


def test_local_archive_is_used_in_place(tmp_path, archive, expected_f):
    local = tmp_path / "downloaded" / NAME
    local.parent.mkdir()
    local.write_bytes(archive)
    model = load_official_archive("flowers", "netM", tmp_path / "official", url=local.as_uri(), log=quiet)
    same_mask_network(model, expected_f)
    assert local.is_file()  # the caller's file is left alone


def fake_gdown(files: dict, log: list) -> types.ModuleType:
    """A stand-in for gdown: a Drive folder holding ``files`` (path -> bytes), ids f"id-{i}"."""
    module = types.ModuleType("gdown")
    listing = [types.SimpleNamespace(id=f"id-{i}", path=path, local_path=None) for i, path in enumerate(files)]
    by_id = {entry.id: files[entry.path] for entry in listing}

    def download_folder(url=None, skip_download=False, **kwargs):
        log.append(("folder", url, skip_download))
        assert skip_download, "the whole folder must never be downloaded"
        return listing

    def download(url=None, output=None, quiet=False, id=None, fuzzy=False, **kwargs):
        log.append(("file", id or url))
        Path(output).write_bytes(by_id[id] if id else next(iter(files.values())))
        return output

    module.download_folder, module.download = download_folder, download
    return module


def test_google_drive_folder_through_gdown(tmp_path, monkeypatch, archive, expected_f):
    calls = []
    files = {"pretrained/lfw_netM_state.tar.gz": b"not this one", f"pretrained/{NAME}": archive}
    monkeypatch.setitem(sys.modules, "gdown", fake_gdown(files, calls))
    model = load_official_archive("flowers", "netM", tmp_path / "official", progress=False, log=quiet)
    assert calls == [("folder", OFFICIAL_WEIGHTS_FOLDER, True), ("file", "id-1")]
    same_mask_network(model, expected_f)


def test_google_drive_without_gdown(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gdown", None)  # import gdown raises ImportError
    with pytest.raises(DownloadError, match="pip install gdown"):
        fetch_official_archive("flowers", "netM", tmp_path / "official", log=quiet)
    assert not (tmp_path / "official" / "flowers_netM_state").exists()
