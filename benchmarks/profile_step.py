"""Where the time of one training iteration goes on this machine (a measurement script).

Profiles ``Trainer.train_iteration`` (the loop ``redo train`` runs: generator step, then
the D step with the fakes regenerated, as the official code does) with
:mod:`torch.profiler` on random images, after ``--warmup`` iterations, and prints:

1. the iteration's phases, from the trainer's ``record_function`` labels
   (``redo.generator_forward``, ``redo.generator_backward``, ``redo.regenerate_fakes``,
   ``redo.discriminator_forward``, ``redo.discriminator_backward``) and the optimisers'
   steps, as shares of the profiled wall time;
2. the top operators by self CPU time.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/profile_step.py --preset flowers --batch-size 2
    python benchmarks/profile_step.py --preset synthetic-flat --batch-size 16 --steps 20 --path plain
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

PHASES = ("redo.generator_forward", "redo.generator_backward", "redo.regenerate_fakes",
          "redo.discriminator_forward", "redo.discriminator_backward")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="synthetic-flat")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="profiled iterations")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--path", choices=("fast", "plain"), default="fast",
                        help="fast: D frozen in the generator step (the trainer's default); plain: official")
    parser.add_argument("--top", type=int, default=15, help="operators to list")
    args = parser.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from redo_lib import get_preset
    from redo_lib.training.benchmark import benchmark_config, benchmark_trainer

    if args.batch_size is None:
        args.batch_size = get_preset(args.preset).train.batch_size
    config = benchmark_config(args.preset, args.batch_size, args.device, image_size=args.image_size, path=args.path)
    trainer = benchmark_trainer(config, official_semantics=args.path == "plain")
    for _ in range(args.warmup):
        trainer.train_iteration()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            trainer.train_iteration()
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
    wall = time.perf_counter() - start
    events = prof.key_averages()
    print(f"preset {args.preset}, batch {args.batch_size}, path {args.path}, {torch.get_num_threads()} threads, "
          f"{args.steps} profiled iterations: {wall / args.steps:.3f} s per iteration (with the profiler on)")
    print("\nphase                          share of wall time   s per iteration")
    total_us = wall * 1e6
    labelled = {e.key: e.cpu_time_total for e in events if e.key in PHASES or e.key.startswith("Optimizer.step")}
    for key in (*PHASES, *sorted(k for k in labelled if k.startswith("Optimizer.step"))):
        if key in labelled:
            print(f"{key:30s} {labelled[key] / total_us:18.1%} {labelled[key] / 1e6 / args.steps:17.3f}")
    print(f"\ntop {args.top} operators by self CPU time")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))
    return 0


if __name__ == "__main__":
    sys.exit(main())
