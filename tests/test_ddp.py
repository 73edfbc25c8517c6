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
    """One process group for every DDP check (spawning and importing are the slow part)."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
                       "RANK": str(rank), "LOCAL_RANK": str(rank), "OMP_WAIT_POLICY": "PASSIVE"})
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False
    info = init_from_env("cpu")
    try:
        _variants(rank, info, out)
        _resume_and_restart(rank, info, out)
    finally:
        shutdown(info)


def _variants(rank, info, out: str) -> None:
    from redo_lib import LossConfig

    from .test_trainer import make_config, make_data

    train, val = make_data()
    for regions in REGIONS:  # one process group, both variants (spawning is the slow part)
        config = make_config(steps=3, eval_every=3, loss=LossConfig(regions=regions))
        trainer = Trainer(config, os.path.join(out, regions), train, val, progress=False, dist=info)
        first_batch = trainer.stream.peek()
        trainer.fit()
        state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        torch.save({"state": state, "first_batch": first_batch}, os.path.join(out, f"{regions}-rank{rank}.pt"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """The folder of one 2-process Gloo session that ran every check of this file."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return out


def test_two_gloo_processes_end_with_identical_weights(ddp_run):
    tmp_path = ddp_run
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


def _resume_and_restart(rank, info, out: str) -> None:
    """Per rank: an uninterrupted run, the same run stopped and resumed, and an auto-restart."""
    from .test_trainer import full_state, make_config, make_data

    result = {}
    train, val = make_data()

    def trainer(name, resume=False, eval_every=4, **options):
        return Trainer(make_config(eval_every=eval_every, **options), os.path.join(out, name), train, val,
                       progress=False, dist=info, resume=resume)

    straight = trainer("straight", steps=4)
    straight.fit()
    first = trainer("split", steps=2)
    first.fit()
    second = trainer("split", resume=True, steps=4)
    result["resumed_at"] = second.step
    second.fit()
    result["straight"], result["split"] = full_state(straight), full_state(second)
    result["rng"] = (straight.rng.get_state(), second.rng.get_state())

    restarting = trainer("restart", steps=2, eval_every=2, auto_restart=0.05, auto_restart_until=100)
    if rank == 0:  # only rank 0 evaluates: it sees a collapse at the first evaluation
        real_evaluate = restarting.evaluate

        def collapsed_once():
            scores = real_evaluate()
            if restarting.restarts == 0:
                for s in scores.values():
                    s["min_region_size"] = 0.0
            return scores

        restarting.evaluate = collapsed_once
    real_build = restarting._build

    def build():
        real_build()
        result["after_restart"] = {"step_before": restarting.step, "iterations": restarting.iterations,
                                   "weights": {k: v.clone() for k, v in restarting.model.state_dict().items()}}

    restarting._build = build
    summary = restarting.fit()
    result["restart_summary"] = summary
    result["restart_final"] = {k: v.clone() for k, v in restarting.model.state_dict().items()}
    torch.save(result, os.path.join(out, f"resume-rank{rank}.pt"))


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_resume_equals_an_uninterrupted_run_and_auto_restart_restarts_both_ranks(ddp_run):
    tmp_path = ddp_run
    ranks = [torch.load(tmp_path / f"resume-rank{r}.pt", weights_only=False) for r in range(2)]
    for r in ranks:
        assert r["resumed_at"] == 2
        assert _equal(r["straight"], r["split"])  # weights and Adam moments, bit for bit
        assert torch.equal(*r["rng"])  # each rank's own random stream continues where it stopped
    assert _equal(ranks[0]["split"], ranks[1]["split"])
    # the collapse seen by rank 0 restarted both ranks at the same iteration, with the same new weights
    restarts = [r["after_restart"] for r in ranks]
    assert restarts[0]["step_before"] == restarts[1]["step_before"] == 2
    assert restarts[0]["iterations"] == restarts[1]["iterations"] == 2
    assert _equal(restarts[0]["weights"], restarts[1]["weights"])
    for r in ranks:
        assert r["restart_summary"]["restarts"] == 1 and r["restart_summary"]["step"] == 2
        assert r["restart_summary"]["iterations"] == 4
    assert _equal(ranks[0]["restart_final"], ranks[1]["restart_final"])
    state = load_checkpoint(tmp_path / "restart" / "last.pt")
    assert state["restarts"] == 1 and state["step"] == 2 and len(state["rng"]) == 2
    # resuming a 2-process checkpoint continues it exactly (compared above) and says so in last.pt
    assert load_checkpoint(tmp_path / "split" / "last.pt")["world_size"] == 2
