"""Checkpoints: atomic writes, weights_only loading, random states, data order."""
import random

import numpy as np
import pytest
import torch

from redo_lib import ReDO, ReDOConfig
from redo_lib.training import BatchStream, CheckpointError, atomic_save, load_checkpoint, load_model
from redo_lib.training.checkpoint import (
    FORMAT,
    NETWORKS,
    capture_rng_state,
    check_resumable,
    model_state,
    restore_rng_state,
)

from .conftest import tiny_config
from .test_trainer import _fast_tiny_convolutions, make_config, make_trainer  # noqa: F401 (autouse fixture)


def test_atomic_save_survives_a_crash_during_the_write(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"step": torch.tensor(1)}, path)
    real_save = torch.save

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"partial garbage")  # part of a file, then the process "dies"
        raise OSError("simulated crash in the middle of torch.save")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_save({"step": torch.tensor(2)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=True)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def test_a_crash_while_checkpointing_keeps_the_previous_last_pt(tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = make_trainer(out, make_config(steps=4, eval_every=2))
    real_save = torch.save

    def crash_second(obj, handle, *args, **kwargs):
        if "optimizers" in obj and obj["step"] == 4:  # the save of last.pt at step 4
            handle.write(b"half a checkpoint")
            raise KeyboardInterrupt  # killed during the save at step 4
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_second)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.setattr(torch, "save", real_save)
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 2
    model, _ = load_model(out / "last.pt")
    assert isinstance(model, ReDO)
    # and the run resumes from it
    resumed = make_trainer(out, make_config(steps=4, eval_every=2), resume=True)
    assert resumed.step == 2
    assert resumed.fit()["step"] == 4


def test_checkpoint_contents_load_with_weights_only(tmp_path):
    out = tmp_path / "run"
    make_trainer(out, make_config(steps=2, eval_every=2)).fit()
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["format"] == FORMAT
    assert set(state["model"]) == set(NETWORKS)
    assert set(state["optimizers"]) == set(NETWORKS)
    assert ReDOConfig.from_dict(state["config"]).model == tiny_config()
    assert set(state["rng"][0]) >= {"torch", "numpy", "python", "generators"}
    assert state["data"]["epoch"] == 0 and state["data"]["position"] == 4  # 2 iterations x (A + reals)
    model, config = load_model(out / "last.pt")
    assert not model.training and config.train.steps == 2
    for name in NETWORKS:
        for key, value in getattr(model, name).state_dict().items():
            assert torch.equal(value, state["model"][name][key])


def test_rng_states_round_trip():
    g = torch.Generator().manual_seed(3)
    state = capture_rng_state({"trainer": g})
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=g))
    restore_rng_state(state, {"trainer": g})
    second = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=g))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert first[2] == second[2] and torch.equal(first[3], second[3])


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a redo_lib checkpoint"):
        load_checkpoint(other)
    wrong = tmp_path / "wrong.pt"
    state = {"format": FORMAT, "version": 1, "config": make_config().to_dict(),
             "model": model_state(ReDO(tiny_config(nz=4)))}
    torch.save(state, wrong)
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(wrong)


def test_check_resumable_names_every_difference():
    stored = make_config()
    requested = make_config(steps=100, batch_size=8)  # steps may change, the batch size may not
    requested.model.nz = 4
    with pytest.raises(CheckpointError) as info:
        check_resumable(stored, requested, "run/last.pt")
    message = str(info.value)
    assert "train.batch_size: checkpoint 4, requested 8" in message
    assert "model.nz: checkpoint 8, requested 4" in message
    assert "steps" not in message
    check_resumable(stored, make_config(steps=100, eval_every=7, device="cpu"))


def test_batch_stream_is_deterministic_resumable_and_sharded():
    stream = BatchStream(10, 3, seed=5)
    batches = [stream.next_indices() for _ in range(7)]  # 3 batches per epoch (last image dropped)
    assert all(len(b) == 3 for b in batches)
    assert len(set(sum(batches[:3], []))) == 9  # one epoch: distinct images
    assert batches[:3] != batches[3:6]  # a new order each epoch
    again = BatchStream(10, 3, seed=5)
    again.load_state_dict({**stream.state_dict(), "epoch": 1, "position": 1})
    assert again.next_indices() == batches[4]
    assert BatchStream(10, 3, seed=6).next_indices() != batches[0]

    ranks = [BatchStream(12, 2, seed=1, rank=r, world_size=2) for r in range(2)]
    a, b = ranks[0].next_indices(), ranks[1].next_indices()
    assert not set(a) & set(b)
    with pytest.raises(ValueError, match="fewer than one batch"):
        BatchStream(3, 2, world_size=2)


class _Files(torch.utils.data.Dataset):
    """A file-like data set (no vectorised ``batch``): items one by one."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return {"image": torch.full((3, 4, 4), float(index)), "index": index}


def test_loader_workers_follow_the_stream_order():
    from redo_lib.training.data import BatchFetcher

    in_process = BatchFetcher(_Files(), BatchStream(12, 3, seed=2), torch.device("cpu"), num_workers=0)
    workers = BatchFetcher(_Files(), BatchStream(12, 3, seed=2), torch.device("cpu"), num_workers=1)
    for _ in range(6):  # across an epoch boundary
        assert torch.equal(in_process.next(), workers.next())
    assert in_process.stream.state_dict() == workers.stream.state_dict()
    # a resumed fetcher (new loader iterator) continues at the same batch
    resumed = BatchFetcher(_Files(), BatchStream(12, 3, seed=2), torch.device("cpu"), num_workers=1)
    resumed.stream.load_state_dict(workers.stream.state_dict())
    assert torch.equal(resumed.next(), in_process.next())
