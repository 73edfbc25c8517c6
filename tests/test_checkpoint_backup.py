"""Checkpoints a Google Drive can hold: networks-only best.pt, backups, failed saves, stale temporaries.

The full-disk tests write to a real, tiny tmpfs (``mount -t tmpfs -o size=...``); where the
mount is not allowed they fall back to a ``torch.save`` that fails with ENOSPC half-way,
so the same assertions run either way.
"""
import errno
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import torch

from redo_lib.cli import EXIT_SAVE_FAILED, main
from redo_lib.training import load_checkpoint, load_model
from redo_lib.training.checkpoint import (
    NETWORKS,
    CheckpointSaveError,
    atomic_save,
    checkpoint_sizes,
    format_bytes,
    remove_stale_temporaries,
)

from .test_cli import SMALL_EVAL, TINY, one_error_line
from .test_trainer import _fast_tiny_convolutions, full_state, make_config, make_trainer, read_metrics  # noqa: F401


def evaluation_steps(out):
    return [r["step"] for r in read_metrics(out) if "event" not in r]


# ----------------------------------------------------------------------------- best.pt
def test_best_pt_holds_the_networks_only_and_loads_with_load_model(tmp_path):
    out = tmp_path / "run"
    trainer = make_trainer(out, make_config(steps=2, eval_every=2))
    trainer.fit()
    best, last = load_checkpoint(out / "best.pt"), load_checkpoint(out / "last.pt")
    assert "optimizers" not in best and "rng" not in best and "data" not in best
    assert best["step"] == last["step"] == 2 and best["best_iou"] == last["best_iou"]
    model, config = load_model(out / "best.pt")
    assert config == trainer.config
    for name in NETWORKS:  # the in-memory networks of step 2 (the only evaluation: the best)
        for key, value in getattr(model, name).state_dict().items():
            assert torch.equal(value, last["model"][name][key]), (name, key)
    assert (out / "best.pt").stat().st_size < (out / "last.pt").stat().st_size / 2


def test_checkpoint_sizes_are_the_sizes_of_real_files(tmp_path):
    config = make_config(steps=2, eval_every=2)
    sizes = checkpoint_sizes(config, folder=tmp_path)
    assert list(tmp_path.iterdir()) == []  # measured in a temporary folder, then removed
    make_trainer(tmp_path / "run", config).fit()
    for name in ("last", "best"):
        real = (tmp_path / "run" / f"{name}.pt").stat().st_size
        assert abs(sizes[name] - real) < 0.01 * real, (name, sizes[name], real)
    assert format_bytes(1.1e9) == "1.1 GB" and format_bytes(372_000_000) == "372.0 MB"


# ----------------------------------------------------------------------------- temporaries
def test_stale_temporary_files_are_removed_at_start_up(tmp_path):
    out, backup = tmp_path / "run", tmp_path / "drive"
    for folder in (out, backup):
        folder.mkdir()
        (folder / ".last.pt.partial-abc123de.tmp").write_bytes(b"half a checkpoint")
        (folder / ".best.pt.partial-zz_9y8x7.tmp").write_bytes(b"half")
        (folder / ".notes.tmp").write_text("not ours")
        (folder / "notes.txt").write_text("not ours")
    messages = []
    make_trainer(out, make_config(steps=2, eval_every=2, backup_dir=str(backup)), log=messages.append)
    for folder in (out, backup):
        assert sorted(p.name for p in folder.iterdir()) == [".notes.tmp", "notes.txt"]
    notices = [m for m in messages if "temporary file(s) of an interrupted save" in m]
    assert len(notices) == 2 and all("\n" not in m for m in notices)
    assert remove_stale_temporaries(tmp_path / "missing") == []


# ----------------------------------------------------------------------------- failed saves
def _enospc_save(monkeypatch, when):
    """torch.save that writes half a file then fails with ENOSPC while ``when(obj)``."""
    real = torch.save

    def save(obj, handle, *args, **kwargs):
        if when(obj):
            handle.write(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_failed_save_names_file_space_and_remedy_and_keeps_last_pt(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = make_trainer(out, make_config(steps=4, eval_every=2))
    _enospc_save(monkeypatch, lambda obj: "optimizers" in obj and obj["step"] == 4)
    with pytest.raises(CheckpointSaveError) as info:
        trainer.fit()
    error = info.value
    assert error.errno == errno.ENOSPC and error.path == out / "last.pt"
    assert error.needed > 100_000 and error.free is not None and error.free > 0
    message = str(error)
    assert "\n" not in message
    for part in (str(out / "last.pt"), "No space left on device (ENOSPC)", "it needs about",
                 format_bytes(error.needed), f"{format_bytes(error.free)} free", "the previous last.pt is intact", "empty the bin", "--resume"):
        assert part in message, part
    monkeypatch.undo()
    assert load_checkpoint(out / "last.pt")["step"] == 2
    assert not list(out.glob(".*.tmp"))
    assert read_metrics(out)[-1]["event"] == "save_failed"
    resumed = make_trainer(out, make_config(steps=4, eval_every=2), resume=True)
    assert resumed.step == 2 and resumed.fit()["step"] == 4


def test_torch_save_on_a_full_disk_reports_the_oserror_not_torchs_runtime_error(tmp_path, monkeypatch):
    """torch.save reports a failed write as RuntimeError('unexpected pos ...'): the real cause is kept."""
    class Full:
        def write(self, data):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")

    import redo_lib.training.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint.os, "fdopen", lambda fd, mode: _Closing(fd, Full()))
    with pytest.raises(CheckpointSaveError, match=r"Disk quota exceeded \(EDQUOT\)"):
        atomic_save({"w": torch.zeros(1000)}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


class _Closing:
    """A context manager over a raw fd that hands out ``handle`` (test helper)."""

    def __init__(self, fd, handle):
        self.fd, self.handle = fd, handle

    def __enter__(self):
        return self.handle

    def __exit__(self, *exc):
        import os

        os.close(self.fd)
        return False


@pytest.fixture()
def small_disk(tmp_path):
    """A 4 MB tmpfs (a real full disk), or None where mounting is not permitted."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_stops_redo_train_with_one_line_and_resume_continues(small_disk, tmp_path, capsys,
                                                                         monkeypatch):
    disk = small_disk if small_disk is not None else tmp_path / "disk"
    out = disk / "run"
    argv = ["train", "--preset", "synthetic-flat", "--out", str(out), "--eval-every", "2", "--batch-size", "4",
            "--device", "cpu", "--quiet", *TINY, *SMALL_EVAL]
    assert main([*argv, "--steps", "2"]) == 0
    capsys.readouterr()
    size = (out / "last.pt").stat().st_size
    if small_disk is not None:  # fill the disk: less than half a checkpoint left
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * max(0, free - size // 2))
    else:
        _enospc_save(monkeypatch, lambda obj: True)
    code = main([*argv, "--steps", "4", "--resume"])
    err = capsys.readouterr().err
    assert code == EXIT_SAVE_FAILED
    line = one_error_line(err)
    assert "could not write" in line and str(out) in line and "No space left on device" in line
    assert "it needs about" in line and "--resume" in line
    if small_disk is not None:
        assert "free" in line
    assert load_checkpoint(out / "last.pt")["step"] == 2  # the previous checkpoint is intact
    assert not list(out.glob(".*.tmp"))
    # space freed: the same command continues to the end
    if small_disk is not None:
        (disk / "filler").unlink()
    monkeypatch.undo()
    assert main([*argv, "--steps", "4", "--resume"]) == 0
    assert load_checkpoint(out / "last.pt")["step"] == 4
    assert evaluation_steps(out) == [2, 4]


# ----------------------------------------------------------------------------- backups
def _record_writes(monkeypatch, trainer):
    """(file name, folder, step) of every file the trainer writes into its backup folder."""
    import redo_lib.training.trainer as trainer_module

    writes = []
    real_save, real_copy = trainer_module.atomic_save, trainer_module.atomic_copy

    def save(obj, path):
        if Path(path).parent == trainer.backup:
            writes.append((Path(path).name, trainer.step))
        return real_save(obj, path)

    def copy(src, dst):
        if Path(dst).parent == trainer.backup:
            writes.append((Path(dst).name, trainer.step))
        return real_copy(src, dst)

    monkeypatch.setattr(trainer_module, "atomic_save", save)
    monkeypatch.setattr(trainer_module, "atomic_copy", copy)
    return writes


def test_backup_dir_gets_best_and_metrics_every_evaluation_and_last_every_n(tmp_path, monkeypatch):
    out, backup = tmp_path / "local", tmp_path / "drive"
    trainer = make_trainer(out, make_config(steps=5, eval_every=1, backup_dir=str(backup), backup_every=2))
    writes = _record_writes(monkeypatch, trainer)
    trainer.fit()
    lasts = [step for name, step in writes if name == "last.pt"]
    assert lasts == [2, 4, 5]  # every 2nd evaluation, and the end of the run
    assert [step for name, step in writes if name == "metrics.jsonl"] == [1, 2, 3, 4, 5]
    best_steps = [r["step"] for r in read_metrics(out) if r.get("is_best")]
    assert [step for name, step in writes if name == "best.pt"] == best_steps
    assert (backup / "metrics.jsonl").read_text() == (out / "metrics.jsonl").read_text()
    assert (backup / "best.pt").read_bytes() == (out / "best.pt").read_bytes()
    assert (backup / "last.pt").read_bytes() == (out / "last.pt").read_bytes()
    assert (backup / "samples_000005.png").is_file()
    assert not (out / ".." / "drive" / "tensorboard").exists()


def test_a_run_folder_refuses_to_overwrite_a_backup_without_resume(tmp_path):
    backup = tmp_path / "drive"
    make_trainer(tmp_path / "a", make_config(steps=2, eval_every=2, backup_dir=str(backup))).fit()
    with pytest.raises(ValueError, match=r"drive already holds a run.*--resume.*--backup-dir"):
        make_trainer(tmp_path / "b", make_config(steps=2, eval_every=2, backup_dir=str(backup)))


def test_resume_from_the_backup_in_a_new_session_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    config = make_config(steps=4, eval_every=1)
    straight = make_trainer(tmp_path / "straight", config)
    straight.fit()

    out, backup = tmp_path / "local", tmp_path / "drive"
    backed = make_config(steps=4, eval_every=1, backup_dir=str(backup), backup_every=2)
    first = make_trainer(out, backed)
    original = first.train_iteration

    def killed(*args, **kwargs):
        if first.step == 3:  # the session dies after the evaluation at step 3 (last.pt on Drive: step 2)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(first, "train_iteration", killed)
    monkeypatch.setattr(first, "_final_backup", lambda failed: None)  # kill -9: nothing runs at exit
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert load_checkpoint(backup / "last.pt")["step"] == 2
    assert [r["step"] for r in read_metrics(backup) if "event" not in r] == [1, 2, 3]
    shutil.rmtree(out)  # a new Colab session: the local disk is empty

    messages = []
    second = make_trainer(out, backed, resume=True, log=messages.append)
    assert second.step == 2 and second.resumed_from == backup / "last.pt"
    assert any(f"resuming from the backup {backup / 'last.pt'}" in m and "at step 2" in m for m in messages)
    second.fit()
    a, b = full_state(straight), full_state(second)
    assert a.keys() == b.keys()
    assert not [key for key in a if not torch.equal(a[key], b[key])]
    assert torch.equal(straight.rng.get_state(), second.rng.get_state())
    # the run folder continues the backup's history, the evaluation at 3 not twice
    assert evaluation_steps(out) == [1, 2, 3, 4]
    assert [r["step"] for r in read_metrics(backup) if "event" not in r] == [1, 2, 3, 4]
    assert load_checkpoint(backup / "last.pt")["step"] == 4
    resumed = [r for r in read_metrics(out) if r.get("event") == "resume"]
    assert resumed[-1]["resumed_from"] == str(backup / "last.pt")


def test_cli_resume_from_the_backup_reads_last_pt_once(tmp_path, capsys, monkeypatch):
    out, backup = tmp_path / "local", tmp_path / "drive"
    argv = ["train", "--preset", "synthetic-flat", "--out", str(out), "--backup-dir", str(backup),
            "--backup-every", "1", "--eval-every", "2", "--batch-size", "4", "--device", "cpu", "--quiet",
            *TINY, *SMALL_EVAL]
    assert main([*argv, "--steps", "2"]) == 0
    assert load_checkpoint(backup / "last.pt")["config"]["train"]["backup_every"] == 1
    shutil.rmtree(out)
    capsys.readouterr()
    reads = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(Path(f).name if isinstance(f, (str, Path)) else f)
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    code = main([*argv, "--steps", "4", "--resume"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert reads.count("last.pt") == 1
    assert f"resuming from the backup {backup / 'last.pt'}" in err and "at step 2" in err
    assert load_checkpoint(out / "last.pt")["step"] == 4 and load_checkpoint(backup / "last.pt")["step"] == 4
    # without --resume, a folder whose backup holds a run is refused
    code = main([*argv, "--out", str(tmp_path / "other"), "--steps", "4"])
    assert code == 2 and "already holds a run" in one_error_line(capsys.readouterr().err)
    assert json.loads((backup / "metrics.jsonl").read_text().splitlines()[0])["event"] == "start"


def test_a_full_disk_while_logging_is_the_same_one_line_error_and_a_cut_line_is_closed(tmp_path, monkeypatch):
    import builtins

    import redo_lib.training.trainer as trainer_module

    out = tmp_path / "run"
    make_trainer(out, make_config(steps=2, eval_every=2)).fit()
    real_open = builtins.open

    def full(path, mode="r", *args, **kwargs):
        if str(path).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "open", full, raising=False)
    with pytest.raises(CheckpointSaveError, match=r"could not write .*metrics\.jsonl: No space left"):
        make_trainer(out, make_config(steps=4, eval_every=2), resume=True).fit()
    monkeypatch.undo()
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 3, "cut by a ki')  # a line cut half-way
    make_trainer(out, make_config(steps=4, eval_every=2), resume=True).fit()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert lines[-3] == '{"step": 3, "cut by a ki'  # on a line of its own; the records after it are whole
    assert json.loads(lines[-1])["step"] == 4 and json.loads(lines[-2])["event"] == "resume"


def test_checkpoint_sizes_script_prints_json(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "checkpoint_sizes.py"
    spec = importlib.util.spec_from_file_location("checkpoint_sizes_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--preset", "synthetic-flat", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["synthetic-flat"]
    assert result["parameters"] == 687_129  # the preset's four networks
    # float32 weights, plus both Adam moments in last.pt
    assert 4 * result["parameters"] < result["best"] < 1.1 * 4 * result["parameters"]
    assert 12 * result["parameters"] < result["last"] < 1.1 * 12 * result["parameters"]


def test_a_save_error_crosses_processes_whole(tmp_path):
    """Under DDP the main process's error is broadcast (pickled) to the others."""
    import pickle

    error = CheckpointSaveError(tmp_path / "last.pt", 1_118_200_603, 52_000_000,
                                OSError(errno.EDQUOT, "Disk quota exceeded"))
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, CheckpointSaveError) and str(again) == str(error)
    assert again.errno == errno.EDQUOT and again.needed == error.needed and again.free == error.free
    assert "it needs about 1.1 GB" in str(error) and "has 52.0 MB free" in str(error)
    assert "no earlier last.pt was there" in str(error)
