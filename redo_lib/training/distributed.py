"""Multi-process training with PyTorch DistributedDataParallel (launched by ``torchrun``).

``torchrun --nproc_per_node N -m redo_lib train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :func:`init_from_env` then joins the process group (NCCL on CUDA, Gloo on
the CPU). Every process trains on its own slice of each global batch (``batch_size`` is
per process) and DDP averages the gradients, so all processes keep identical weights.
Only rank 0 evaluates and writes files; its decisions (auto-restart) are broadcast.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Optional

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "init_from_env", "wrap_ddp", "disable_ddp_graph_splitting", "broadcast_object",
           "all_gather_object", "any_flag", "barrier", "shutdown"]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, backend=backend)


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device, *,
             find_unused_parameters: bool = False) -> nn.Module:
    """DDP-wrap a module when running distributed, else return it unchanged."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids,
                                   find_unused_parameters=find_unused_parameters)


def disable_ddp_graph_splitting(info: DistInfo) -> bool:
    """Turn off dynamo's DDP optimizer when running distributed; returns whether it did.

    Call before compiling modules that DDP will wrap. With ``torch._dynamo.config.optimize_ddp``
    on (the default), dynamo splits each compiled graph at DDP's gradient-bucket boundaries so
    that all-reduces can overlap the backward pass; on spectrally normalised modules this
    splitting fails as soon as a model has more than one bucket. Whole graphs are compiled
    instead (DDP still all-reduces its buckets, after each graph's backward). A single process
    (``world_size`` 1) leaves the flag untouched. The flag is process-wide.
    """
    if not info.enabled:
        return False
    import torch._dynamo

    torch._dynamo.config.optimize_ddp = False
    return True


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    if not info.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_gather_object(obj: Any, info: DistInfo) -> List[Any]:
    if not info.enabled:
        return [obj]
    out: List[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def any_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every process when ``flag`` is true on any of them."""
    if not info.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device if info.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
