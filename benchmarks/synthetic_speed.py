"""How many synthetic images per second the generator makes (batched and one by one).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/synthetic_speed.py [--image-size 64] [--n 2000]
        [--n-regions 2] [--batch-size 64] [--repeats 3]

Prints the median images per second of ``SyntheticShapes.batch`` (what a trainer or a
``DataLoader`` uses through ``__getitems__``) and of ``dataset[i]``, by wall clock and by
process CPU time (the second does not depend on what else the machine runs). Generation
is numpy only; pin it to one core with ``OMP_NUM_THREADS=1`` to measure per-core speed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redo_lib.data.synthetic import SyntheticShapes  # noqa: E402


def measure(function, n: int, repeats: int):
    """Median images per second over ``repeats`` runs: (by wall clock, by CPU time)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        wall.append(n / (time.perf_counter() - start))
        cpu.append(n / max(time.process_time() - start_cpu, 1e-9))
    return statistics.median(wall), statistics.median(cpu)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--n", type=int, default=2000, help="images per measurement")
    parser.add_argument("--n-regions", type=int, default=2, choices=(2, 3))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    data = SyntheticShapes(split="train", image_size=args.image_size, n_regions=args.n_regions, length=args.n)
    data.batch(range(min(8, args.n)))  # warm-up

    def batched():
        for start in range(0, args.n, args.batch_size):
            data.batch(range(start, min(start + args.batch_size, args.n)))

    def single():
        for i in range(args.n):
            data[i]

    batched_rate = measure(batched, args.n, args.repeats)
    single_rate = measure(single, args.n, args.repeats)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"synthetic {args.image_size}x{args.image_size}, K={args.n_regions}, n={args.n}, OMP_NUM_THREADS={threads}")
    print(f"  batch({args.batch_size}): {batched_rate[0]:8.0f} images/s  ({batched_rate[1]:.0f} per CPU second)")
    print(f"  dataset[i]: {single_rate[0]:8.0f} images/s  ({single_rate[1]:.0f} per CPU second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
