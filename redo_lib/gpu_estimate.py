"""Floors on a training run's time and memory on a GPU, counted on the CPU.

No GPU has to run for these figures: one :meth:`~redo_lib.training.trainer.Trainer.train_iteration`
(the generator step and the D step(s) of Chen et al., 2019, Sec. 3.3) runs on the CPU under

- :class:`torch.utils.flop_counter.FlopCounterMode`, which adds up the floating-point
  operations of every matrix product, convolution and attention of the forward and
  backward passes (element-wise work is not counted), and
- :func:`torch.autograd.graph.saved_tensors_hooks`, which sees every tensor autograd keeps
  for a backward pass; their bytes (each storage once) are the activations that must sit
  in memory at the end of a step's forward pass.

Both grow linearly with the batch size (a batch-independent part: spectral norm's power
iterations, the normalised weights), so they are counted at batch 1 and 2 and extended
to the preset's batch: the full-size iteration never has to run on the CPU. The FLOP
count is exactly linear; the saved bytes are storage sizes as the CPU allocated them,
linear to within a few per cent on the tests' tiny networks (checked at a third batch).

What they imply (:func:`gpu_floors`) are floors, not predictions: the time assumes every
counted operation runs at the GPU's peak rate (real training reaches a fraction of it and
also waits for element-wise kernels, the data and the evaluations), and the memory counts
the parameters, their gradients, Adam's two moments and the saved activations of the
larger step, without the allocator's slack, the workspaces or the CUDA context.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["GPU", "GPUS", "IterationCost", "count_iterations", "iteration_cost", "gpu_floors",
           "sessions_needed", "COLAB_SESSION_HOURS"]


@dataclass(frozen=True)
class GPU:
    """Peak arithmetic rates and memory of one GPU, from NVIDIA's datasheets.

    ``amp_tflops``: dense tensor-core rate of the precision ``--amp`` trains in (float16 on
    a T4, bfloat16 from compute capability 8.0), without structured sparsity;
    ``fp32_tflops``: plain float32 (no TF32 tensor cores).
    """

    name: str
    amp_tflops: float
    amp_precision: str
    fp32_tflops: float
    memory_gb: Tuple[float, ...]
    source: str


#: The GPUs a Colab user meets. Peak rates from NVIDIA's datasheets: T4 (Tesla T4 datasheet:
#: 65 TFLOPS mixed-precision FP16/FP32, 8.1 TFLOPS FP32, 16 GB), A100 (A100 datasheet: 312
#: TFLOPS BF16 tensor core dense, 19.5 TFLOPS FP32, 40 or 80 GB), H100 SXM (H100 datasheet:
#: 1,979 TFLOPS BF16 with sparsity, so 989 dense, 67 TFLOPS FP32, 80 GB).
GPUS: Tuple[GPU, ...] = (
    GPU("T4", 65.0, "float16", 8.1, (16.0,), "https://www.nvidia.com/en-us/data-center/tesla-t4/"),
    GPU("A100", 312.0, "bfloat16", 19.5, (40.0, 80.0), "https://www.nvidia.com/en-us/data-center/a100/"),
    GPU("H100 SXM", 989.0, "bfloat16", 67.0, (80.0,), "https://www.nvidia.com/en-us/data-center/h100/"),
)

#: Colab's maximum virtual-machine lifetime ("can be as much as 12 hours", Colab FAQ,
#: https://research.google.com/colaboratory/faq.html); free sessions often end sooner.
COLAB_SESSION_HOURS = 12.0


@dataclass(frozen=True)
class IterationCost:
    """What one training iteration costs, extended linearly to ``batch_size``.

    ``flops``: counted floating-point operations (forward + backward, all steps);
    ``saved_bytes``: bytes of the tensors saved for backward by the larger of the generator
    step and a D step (float32); ``state_bytes``: parameters + gradients + Adam's two
    moments (float32: 16 bytes per parameter); ``per_image_*``: the slopes of the fit.
    """

    preset: str
    batch_size: int
    image_size: int
    n_parameters: int
    flops: float
    saved_bytes: float
    state_bytes: float
    per_image_flops: float
    per_image_saved_bytes: float
    counted_at: Tuple[int, ...]

    @property
    def memory_bytes(self) -> float:
        """The memory floor: training state plus the larger step's saved activations."""
        return self.state_bytes + self.saved_bytes


class _SavedBytes:
    """A ``saved_tensors_hooks`` pair that adds up the bytes autograd keeps for backward.

    Each storage counts once (views of one tensor share it) and parameters not at all (they
    are in the training state). The counter holds every storage it has seen until
    :meth:`close` (called at the end of a step's forward pass), so that no address is freed
    and reused within a step; a tensor saved by a graph that the step itself drops would
    count as well (ReDO's steps keep every graph they build until the backward pass).
    """

    def __init__(self, exclude: Sequence[torch.Tensor] = ()) -> None:
        self.excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self.held: Dict[int, torch.UntypedStorage] = {}
        self.bytes = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.excluded and key not in self.held:
            self.held[key] = storage
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def close(self) -> int:
        """Add the bytes of the storages seen since the last call to :attr:`bytes`."""
        self.bytes += sum(storage.nbytes() for storage in self.held.values())
        self.held.clear()
        return self.bytes


def count_iterations(preset: str = "flowers", batch_sizes: Sequence[int] = (1, 2), *,
                     image_size: Optional[int] = None,
                     overrides: Optional[Dict[str, object]] = None) -> List[Dict[str, float]]:
    """Run one training iteration of ``preset`` on the CPU (float32) per batch size and count it.

    One trainer (:func:`redo_lib.training.benchmark.benchmark_trainer`, random images) runs
    :meth:`~redo_lib.training.trainer.Trainer.train_iteration` once per entry of
    ``batch_sizes``. Each entry of the result holds ``flops`` (the whole iteration),
    ``saved_g`` / ``saved_d`` (bytes saved for backward by the generator step and by one D
    step; the parameters themselves are not counted: they are in the training state) and
    ``n_parameters``. ``overrides`` sets ``model.*`` options (tests use small networks).
    """
    from .training.benchmark import benchmark_config, benchmark_trainer

    config = benchmark_config(preset, 1, "cpu", image_size=image_size, path="plain")
    for key, value in (overrides or {}).items():
        setattr(config.model, key, value)
    trainer = benchmark_trainer(config.validate())
    params = list(trainer.model.parameters())
    steps = trainer.g_step, trainer.d_step
    size = config.model.image_size
    results = []
    for batch in batch_sizes:
        counters = {"g": _SavedBytes(params), "d": _SavedBytes(params)}

        def hooked(step, counter):
            def run(*args, **kwargs):
                with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
                    result = step(*args, **kwargs)
                counter.close()  # the graph of the step is complete: what it holds now
                return result
            return run

        trainer.g_step, trainer.d_step = hooked(steps[0], counters["g"]), hooked(steps[1], counters["d"])
        images = torch.rand(batch, 3, size, size) * 2 - 1
        reals = [torch.rand_like(images) * 2 - 1 for _ in range(config.train.d_steps)]
        flop_counter = FlopCounterMode(display=False)
        try:
            with flop_counter:
                trainer.train_iteration(images, reals)
        finally:
            trainer.g_step, trainer.d_step = steps
        results.append({"batch_size": float(batch), "flops": float(flop_counter.get_total_flops()),
                        "saved_g": float(counters["g"].bytes), "saved_d": float(counters["d"].bytes),
                        "n_parameters": float(sum(p.numel() for p in params))})
    return results


def iteration_cost(preset: str = "flowers", batch_size: Optional[int] = None, *,
                   image_size: Optional[int] = None, counted_at: Tuple[int, int] = (1, 2),
                   overrides: Optional[Dict[str, object]] = None) -> IterationCost:
    """One iteration's FLOPs and memory at ``batch_size`` (default: the preset's).

    Counted at the two batch sizes of ``counted_at`` with :func:`count_iterations` and
    extended along the line through them (both quantities are linear in the batch size:
    ``tests/test_chapter10.py`` checks it at a third one).
    """
    from .config import get_preset

    batch = batch_size or get_preset(preset).train.batch_size
    b1, b2 = counted_at
    c1, c2 = count_iterations(preset, (b1, b2), image_size=image_size, overrides=overrides)

    def extend(key: str) -> Tuple[float, float]:
        slope = (c2[key] - c1[key]) / (b2 - b1)
        return c1[key] + slope * (batch - b1), slope

    flops, per_flops = extend("flops")
    saved_g, per_g = extend("saved_g")
    saved_d, per_d = extend("saved_d")
    saved, per_saved = (saved_g, per_g) if saved_g >= saved_d else (saved_d, per_d)
    n = int(c1["n_parameters"])
    size = image_size or (overrides or {}).get("image_size") or get_preset(preset).model.image_size
    return IterationCost(preset=preset, batch_size=batch, image_size=size, n_parameters=n, flops=flops,
                         saved_bytes=saved, state_bytes=16.0 * n, per_image_flops=per_flops,
                         per_image_saved_bytes=per_saved, counted_at=(b1, b2))


def gpu_floors(cost: IterationCost, steps: int, gpus: Sequence[GPU] = GPUS) -> List[Dict[str, object]]:
    """Per GPU: the fastest an iteration and a run of ``steps`` iterations can be, and whether
    the memory floor fits (``fits_gb``: the memory sizes it fits in). Times in seconds (``amp``: at the tensor-core rate of ``--amp``;
    ``fp32``: at the float32 rate)."""
    rows = []
    for gpu in gpus:
        amp_s = cost.flops / (gpu.amp_tflops * 1e12)
        fp32_s = cost.flops / (gpu.fp32_tflops * 1e12)
        rows.append({"gpu": gpu.name, "amp_precision": gpu.amp_precision,
                     "amp_s_per_it": amp_s, "fp32_s_per_it": fp32_s,
                     "amp_run_hours": amp_s * steps / 3600, "fp32_run_hours": fp32_s * steps / 3600,
                     "memory_gb": gpu.memory_gb,
                     "fits_gb": tuple(m for m in gpu.memory_gb if cost.memory_bytes < m * 1e9)})
    return rows


def sessions_needed(seconds_per_iteration: float, steps: int, seeds: int,
                    session_hours: float = COLAB_SESSION_HOURS) -> int:
    """Colab sessions for ``seeds`` runs of ``steps`` iterations at ``seconds_per_iteration``
    (training time only; a session that ends mid-seed is resumed by the next one)."""
    if seconds_per_iteration <= 0 or steps <= 0 or seeds <= 0:
        raise ValueError("seconds_per_iteration, steps and seeds must be positive")
    return max(1, math.ceil(seconds_per_iteration * steps * seeds / (session_hours * 3600)))
