"""Finding the shipped checkpoints: in the checkout, else downloaded and checked (a pip install).

Downloads come from a local HTTP server on 127.0.0.1 (tests/data_fakes.FakeServer); the
cache goes to a temporary ``XDG_CACHE_HOME``. A pip install is simulated by searching for
``data/checkpoints/`` above an empty folder only.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import yaml

import redo_lib.utils as utils
from redo_lib.data.errors import ChecksumError, DownloadError
from redo_lib.utils import shipped_checkpoint
from tests.data_fakes import FakeServer

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "data" / "checkpoints"

pytestmark = pytest.mark.usefixtures("no_proxy")


def _tool():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import write_manifest
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return write_manifest


def _entry(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


FILES = {"toy.pt": b"weights of a toy model " * 100, "toy_metrics.jsonl": b'{"step": 1, "iou": 0.5}\n'}


@pytest.fixture()
def installed(tmp_path, monkeypatch):
    """A pip install: no data/checkpoints/ anywhere above, an empty cache, a manifest of FILES."""
    nowhere = tmp_path / "site-packages"
    nowhere.mkdir()
    monkeypatch.setattr(utils, "_search_starts", lambda: [nowhere])
    monkeypatch.setattr(utils, "shipped_manifest", lambda: {name: _entry(data) for name, data in FILES.items()})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("REDO_CHECKPOINT_URL", raising=False)
    return tmp_path / "cache" / "redo_lib" / "checkpoints"


@pytest.fixture()
def server(monkeypatch):
    fake = FakeServer(dict(FILES))
    monkeypatch.setenv("REDO_CHECKPOINT_URL", fake.url + "/")
    yield fake
    fake.close()


# --- found locally ----------------------------------------------------------------------

def test_a_checkpoint_in_the_checkout_is_found_without_any_download(monkeypatch, tmp_path):
    monkeypatch.setenv("REDO_CHECKPOINT_URL", "http://127.0.0.1:9/never-asked")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert Path(shipped_checkpoint("synthetic-flat")).resolve() == (CHECKPOINTS / "synthetic-flat.pt").resolve()
    monkeypatch.chdir(ROOT / "book")  # where the notebooks run
    assert Path(shipped_checkpoint("synthetic-flat")).resolve() == (CHECKPOINTS / "synthetic-flat.pt").resolve()
    assert not (tmp_path / "cache").exists()


def test_a_local_file_comes_first(tmp_path, monkeypatch):
    local = tmp_path / "project" / "data" / "checkpoints" / "toy.pt"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"my own toy")  # not the manifest's bytes: local files are not checked
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.setattr(utils, "shipped_manifest", lambda: {name: _entry(data) for name, data in FILES.items()})
    monkeypatch.setenv("REDO_CHECKPOINT_URL", "http://127.0.0.1:9/never-asked")
    assert shipped_checkpoint("toy") == tmp_path / "project" / "data" / "checkpoints" / "toy.pt"


# --- downloaded ---------------------------------------------------------------------------

def test_not_found_locally_it_is_downloaded_with_its_log_and_cached(installed, server):
    path = shipped_checkpoint("toy")
    assert path == installed / "toy.pt" and path.read_bytes() == FILES["toy.pt"]
    assert (installed / "toy_metrics.jsonl").read_bytes() == FILES["toy_metrics.jsonl"]
    assert sorted(p.name for p in installed.iterdir()) == ["toy.pt", "toy_metrics.jsonl"]  # nothing half-done
    assert sorted(name for name, _ in server.log) == ["toy.pt", "toy_metrics.jsonl"]
    server.log.clear()
    assert shipped_checkpoint("toy") == path
    assert server.log == []  # the verified cache answers


def test_a_damaged_cached_file_is_downloaded_again(installed, server):
    shipped_checkpoint("toy")
    (installed / "toy.pt").write_bytes(b"x" * len(FILES["toy.pt"]))  # same size, other bytes
    server.log.clear()
    assert shipped_checkpoint("toy").read_bytes() == FILES["toy.pt"]
    assert [name for name, _ in server.log] == ["toy.pt"]


def test_the_real_manifest_downloads_the_real_checkpoint(tmp_path, monkeypatch):
    """The packaged manifest matches data/checkpoints/: served as a pip install would get it."""
    manifest = utils.shipped_manifest()
    assert "synthetic-flat.pt" in manifest
    served = {name: (CHECKPOINTS / name).read_bytes() for name in manifest}
    fake = FakeServer(served)
    try:
        nowhere = tmp_path / "site-packages"
        nowhere.mkdir()
        monkeypatch.setattr(utils, "_search_starts", lambda: [nowhere])
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setenv("REDO_CHECKPOINT_URL", fake.url)
        path = shipped_checkpoint("synthetic-flat")
    finally:
        fake.close()
    assert path.read_bytes() == served["synthetic-flat.pt"]
    assert path.with_name("synthetic-flat_metrics.jsonl").is_file() == ("synthetic-flat_metrics.jsonl" in manifest)


def test_the_default_url_is_the_repository_of_the_book():
    repository = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]
    expected = f"{repository['url']}/raw/{repository.get('branch', 'main')}/data/checkpoints"
    assert utils.RAW_BASE_URL == expected, (
        "redo_lib.utils.RAW_BASE_URL must point at data/checkpoints/ of the repository in _config.yml")


# --- errors ---------------------------------------------------------------------------------

def test_a_checksum_mismatch_is_a_clear_error_and_leaves_nothing(installed, server):
    server.files["toy.pt"] = b"W" + FILES["toy.pt"][1:]  # same size, other content
    with pytest.raises(ChecksumError) as info:
        shipped_checkpoint("toy")
    message = str(info.value)
    assert "toy.pt" in message and server.url in message
    assert hashlib.sha256(FILES["toy.pt"]).hexdigest() in message  # what was expected
    assert "REDO_CHECKPOINT_URL" in message and "clone the repository" in message  # the fix
    assert not installed.exists() or list(installed.iterdir()) == []


def test_a_file_of_the_wrong_size_is_a_checksum_error_too(installed, server):
    server.files["toy.pt"] = b"short"
    with pytest.raises(ChecksumError, match=r"toy\.pt .*5 bytes.*Fix: set REDO_CHECKPOINT_URL"):
        shipped_checkpoint("toy")


def test_a_missing_file_on_the_server_says_what_to_do(installed, server):
    del server.files["toy.pt"]
    with pytest.raises(DownloadError, match=r"HTTP 404.*clone the repository.*REDO_CHECKPOINT_URL"):
        shipped_checkpoint("toy")


def test_an_unknown_name_lists_the_known_names(installed):
    with pytest.raises(FileNotFoundError, match=r"no shipped checkpoint 'nope'.*known names: toy\b"):
        shipped_checkpoint("nope")


def test_an_unknown_name_with_the_real_manifest(monkeypatch, tmp_path):
    monkeypatch.setattr(utils, "_search_starts", lambda: [tmp_path])
    known = sorted(name[:-3] for name in utils.shipped_manifest() if name.endswith(".pt"))
    with pytest.raises(FileNotFoundError) as info:
        shipped_checkpoint("no-such-model")
    assert f"known names: {', '.join(known)}" in str(info.value)


def test_download_false_never_downloads(installed):
    with pytest.raises(FileNotFoundError, match="download=False"):
        shipped_checkpoint("toy", download=False)


# --- the manifest -------------------------------------------------------------------------------

def test_the_manifests_list_exactly_the_shipped_files_present():
    tool = _tool()
    assert tool.main(["--check"]) == 0, "run: python tools/write_manifest.py"
    present = sorted(p.name for pattern in ("*.pt", "*_metrics.jsonl") for p in CHECKPOINTS.glob(pattern))
    packaged = json.loads((ROOT / "redo_lib" / "shipped_manifest.json").read_text())
    beside = json.loads((CHECKPOINTS / "MANIFEST.json").read_text())
    assert packaged == beside
    assert sorted(packaged["files"]) == present
    assert utils.shipped_manifest() == packaged["files"]


def test_write_manifest_check_fails_on_a_stale_manifest(tmp_path, capsys):
    tool = _tool()
    folder, packaged = tmp_path / "checkpoints", tmp_path / "pkg" / "shipped_manifest.json"
    folder.mkdir()
    args = ["--checkpoints", str(folder), "--package-manifest", str(packaged)]
    assert tool.main(["--check", *args]) == 1  # no manifest yet
    (folder / "a.pt").write_bytes(b"a")
    (folder / "a_metrics.jsonl").write_text("{}\n")
    (folder / "notes.txt").write_text("not shipped")
    assert tool.main(args) == 0
    written = json.loads(packaged.read_text())
    assert sorted(written["files"]) == ["a.pt", "a_metrics.jsonl"]
    assert written["files"]["a.pt"] == _entry(b"a")
    assert tool.main(["--check", *args]) == 0
    capsys.readouterr()
    (folder / "b.pt").write_bytes(b"b")
    (folder / "a.pt").write_bytes(b"A")
    (folder / "a_metrics.jsonl").unlink()
    assert tool.main(["--check", *args]) == 1
    out = capsys.readouterr().out
    assert "b.pt is present but not listed" in out
    assert "a.pt has changed" in out
    assert "a_metrics.jsonl is listed but not present" in out
    assert "python tools/write_manifest.py" in out


def test_pyproject_ships_the_manifest_as_package_data():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "shipped_manifest.json" in config["tool"]["setuptools"]["package-data"]["redo_lib"]
    assert (ROOT / "redo_lib" / "shipped_manifest.json").is_file()
