"""DistributedDataParallel on the CPU: two Gloo processes keep identical weights."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from redo_lib.training import Trainer, load_checkpoint
from redo_lib.training.distributed import init_from_env, shutdown

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with Gloo is not available")


REGIONS = ("all", "one")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_WAIT_POLICY": "PASSIVE"})
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    from redo_lib import LossConfig

    from .test_trainer import make_config, make_data

    info = init_from_env("cpu")
    try:
        train, val = make_data()
        for regions in REGIONS:  # one process group, both variants (spawning is the slow part)
            config = make_config(steps=3, eval_every=3, loss=LossConfig(regions=regions))
            trainer = Trainer(config, os.path.join(out, regions), train, val, progress=False, dist=info)
            first_batch = trainer.stream.peek()
            trainer.fit()
            state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            torch.save({"state": state, "first_batch": first_batch}, os.path.join(out, f"{regions}-rank{rank}.pt"))
    finally:
        shutdown(info)


def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for regions in REGIONS:  # "one": a generator unused at a step (find_unused_parameters)
        r0 = torch.load(tmp_path / f"{regions}-rank0.pt", weights_only=True)
        r1 = torch.load(tmp_path / f"{regions}-rank1.pt", weights_only=True)
        assert not set(r0["first_batch"]) & set(r1["first_batch"])  # each process its own images
        for key, value in r0["state"].items():
            assert torch.equal(value, r1["state"][key]), (regions, key)
        # only rank 0 writes; its checkpoint holds both processes' random states
        state = load_checkpoint(tmp_path / regions / "last.pt")
        assert state["step"] == 3 and state["world_size"] == 2 and len(state["rng"]) == 2
        for key, value in state["model"]["generator"].items():
            assert torch.equal(value, r0["state"][f"generator.{key}"])
        # three updates were made (not two untouched copies of the initialisation)
        assert float(state["optimizers"]["discriminator"]["state"][0]["step"]) == 3
