"""``redo data download`` / ``redo data check`` through the CLI functions (local server only)."""
from __future__ import annotations

import argparse

import pytest

import redo_lib.data.download as download_module
from redo_lib.data.cli import add_data_parser, main
from redo_lib.data.sources import RemoteFile, Source
from tests.data_fakes import FakeServer, fake_flowers_source, make_flowers, make_mnist


pytestmark = pytest.mark.usefixtures("no_proxy")


@pytest.fixture()
def fake_flowers(tmp_path_factory, monkeypatch):
    """The fake Flowers archives served locally, with the CLI's source table patched to them."""
    files, source = fake_flowers_source(tmp_path_factory.mktemp("fake"))
    server = FakeServer(files)
    monkeypatch.setattr(download_module, "SOURCES", {"flowers": source})
    yield server, source
    server.close()


def test_download_then_idempotent_rerun(tmp_path, fake_flowers, capsys):
    server, _ = fake_flowers
    root = tmp_path / "flowers"
    argv = ["data", "download", "flowers", "--root", str(root), "--mirror", server.url, "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "train" in out and "differs from the published count" in out  # 4 fake images, not 6,149
    server.log.clear()
    assert main(argv) == 0
    assert "nothing downloaded" in capsys.readouterr().out and server.log == []


def test_checksum_mismatch_exits_2_without_traceback(tmp_path, fake_flowers, monkeypatch, capsys):
    server, source = fake_flowers
    bad = Source("flowers", "flowers", (RemoteFile("setid.mat", "x", "0" * 32, None, provides=("setid.mat",)),), "")
    monkeypatch.setattr(download_module, "SOURCES", {"flowers": bad})
    root = tmp_path / "flowers"
    assert main(["data", "download", "flowers", "--root", str(root), "--mirror", server.url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: setid.mat: MD5 mismatch") and "Traceback" not in err
    assert not root.exists()  # nothing left behind, not even an empty folder


def test_check_counts_and_strict(tmp_path, capsys):
    make_flowers(tmp_path, {"trnid": [1], "valid": [2], "tstid": [3, 4]})
    assert main(["data", "check", "flowers", "--root", str(tmp_path), "--no-progress", "--decode"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "6149" in out and "differs" in out
    assert main(["data", "check", "flowers", "--root", str(tmp_path), "--strict", "--no-progress"]) == 2


def test_check_missing_data_set_prints_the_download_command(tmp_path, capsys):
    assert main(["data", "check", "cub", "--root", str(tmp_path / "cub")]) == 2
    assert f"redo data download cub --root {tmp_path / 'cub'}" in capsys.readouterr().err


def test_check_cmnist_and_synthetic(tmp_path, capsys):
    make_mnist(tmp_path, n_train=10030, n_test=20)
    assert main(["data", "check", "mnist", "--root", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "    30 " in out and "50000" in out and "10000" in out
    assert main(["data", "check", "synthetic"]) == 0
    assert "4000" in capsys.readouterr().out


def test_unknown_name_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "download", "imagenet"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_add_data_parser_plugs_into_another_cli(capsys):
    parser = argparse.ArgumentParser(prog="redo")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train")
    add_data_parser(commands)
    args = parser.parse_args(["data", "list"])
    assert args.func(args) == 0
    assert "synthetic" in capsys.readouterr().out
