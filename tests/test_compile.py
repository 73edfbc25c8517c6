"""``train.compile``: the backend option, DDP's graph splitting, and how often dynamo compiles.

The compilation tests count dynamo's graphs on the CPU with the ``eager`` backend (graph
capture only, no code generation: seconds, not minutes). Recompiles come from dynamo's
guards, which the backend does not set: ``aot_eager`` gives the same counts.
"""
from typing import Dict

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from redo_lib import ReDOConfig, get_preset
from redo_lib.training import Trainer
from redo_lib.training.benchmark import benchmark_trainer
from redo_lib.training.checkpoint import NETWORKS
from redo_lib.training.distributed import DistInfo, disable_ddp_graph_splitting
from redo_lib.training.trainer import check_train_config

BATCH_SIZE = 2
STEADY_ITERATIONS = range(3, 7)  # iterations 3..6: after the first two, nothing may compile


def compiled_config() -> ReDOConfig:
    """The synthetic preset with tiny widths, compiled with the cheap ``eager`` backend."""
    config = get_preset("synthetic-flat")
    config.model.image_size = 32
    config.model.nf_mask, config.model.nf_gen, config.model.nf_disc, config.model.nf_info = 8, 4, 4, 4
    config.train.batch_size = BATCH_SIZE
    config.train.device = "cpu"
    config.train.compile = True
    config.train.compile_backend = "eager"
    return config.validate()


def compiled_trainer() -> Trainer:
    """A trainer on random images, as the benchmarks build it (no files written)."""
    return benchmark_trainer(compiled_config())


def compilations() -> Dict[str, int]:
    """Dynamo's counts since the last reset: graphs compiled, frames tried, frames compiled."""
    return {"graphs": counters["stats"]["unique_graphs"], "frames": counters["frames"]["total"],
            "frames_ok": counters["frames"]["ok"]}


# ----------------------------------------------------------------------------- configuration
def test_compile_backend_defaults_to_inductor_and_must_be_named():
    assert ReDOConfig().train.compile_backend == "inductor"
    config = compiled_config()
    check_train_config(config)
    for bad in ("", "  "):
        config.train.compile_backend = bad
        with pytest.raises(ValueError, match="train.compile_backend must be a non-empty"):
            check_train_config(config)


# ----------------------------------------------------------------------------- DDP graph splitting
# (torch._dynamo.config is changed through its own ``patch``, which restores it on exit:
# pytest's monkeypatch deletes the option of a config module instead of restoring it.)
def test_ddp_graph_splitting_is_disabled_only_when_distributed():
    with torch._dynamo.config.patch(optimize_ddp=True):
        assert disable_ddp_graph_splitting(DistInfo(rank=0, world_size=1)) is False
        assert torch._dynamo.config.optimize_ddp is True
        assert disable_ddp_graph_splitting(DistInfo(rank=1, world_size=2, local_rank=1, backend="gloo")) is True
        assert torch._dynamo.config.optimize_ddp is False


# ----------------------------------------------------------------------------- compilation counts
def test_training_iterations_stop_compiling_after_the_first_two(fresh_dynamo):
    trainer = compiled_trainer()
    per_iteration = []
    for _ in range(max(STEADY_ITERATIONS)):
        trainer.train_iteration()
        per_iteration.append(compilations())
    print("dynamo compilations after each iteration:", per_iteration)
    warm, last = per_iteration[1], per_iteration[-1]
    assert last == warm, (
        f"dynamo compiled again in iterations {STEADY_ITERATIONS.start}..{STEADY_ITERATIONS.stop - 1}: "
        f"{warm} after iteration 2, {last} after iteration {len(per_iteration)}"
    )
    # each network at most twice: with and without gradients (D: frozen on fakes, training on reals)
    assert 1 <= last["graphs"] <= 2 * len(NETWORKS), f"{last['graphs']} graphs for {len(NETWORKS)} networks"
    assert last["frames"] == last["frames_ok"], f"some frames were left uncompiled: {last}"


def test_auto_restart_drops_the_old_graphs(fresh_dynamo):
    # The new networks of a restart never match the old graphs' guards; kept, those graphs
    # would count towards recompile_limit (8 by default, reached at the 4th restart).
    # A limit of 3 makes the first restart show it.
    with torch._dynamo.config.patch(recompile_limit=3):
        trainer = compiled_trainer()
        trainer.train_iteration()
        first = compilations()
        trainer._auto_restart({"min_region_size": 0.0})
        for _ in range(2):
            trainer.train_iteration()
        after = compilations()
    print("dynamo compilations before / after an auto-restart:", first, after)
    assert after["frames"] == after["frames_ok"], f"networks left uncompiled after an auto-restart: {after}"
    assert after["graphs"] == 2 * first["graphs"], "a restart should compile the same graphs as the start"
