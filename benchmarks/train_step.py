"""Speed and memory of full ReDO training iterations (a measurement script, not a test).

Two paths are measured, each in its own fresh process (so that peak memory is its own):

- ``fast``: this project's loop: D's weight gradients are not computed in the generator
  step (D frozen), plus, on CUDA, mixed precision (``redo_lib.utils.amp_choice``: bf16 on
  compute capability >= 8.0, else fp16 with a gradient scaler), TF32 matmuls and
  convolutions (the trainer's CUDA setting) and channels-last (``--no-amp`` /
  ``--no-channels-last`` turn them off; ``--compile`` adds ``torch.compile``);
- ``plain``: the official semantics in float32 eager mode: D's gradients are computed in
  the generator step and zeroed before the D step. Float32 for real: TF32 is switched off
  for its iterations (``torch.backends.cuda.matmul.allow_tf32`` and
  ``torch.backends.cudnn.allow_tf32``), so the fast / plain ratio compares with true float32.

Both run exactly the training iteration of :class:`redo_lib.training.Trainer` (generator
step + D step) on random images in [-1, 1]; ``--steps`` iterations are timed after
``--warmup`` iterations, each timed on its own (``it_per_s`` is the inverse of the median
iteration time, robust to other processes on a shared machine). Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA, the
process's peak resident set size (``getrusage``) on the CPU.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_step.py --preset synthetic-flat --batch-size 16 --device cpu
    python benchmarks/train_step.py --preset flowers --batch-size 25 --device cuda --json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

PATHS = ("fast", "plain")


def _trainer(args: argparse.Namespace, path: str):
    from redo_lib.training.benchmark import benchmark_config, benchmark_trainer

    config = benchmark_config(args.preset, args.batch_size, args.device, image_size=args.image_size, path=path,
                              amp=not args.no_amp, channels_last=not args.no_channels_last, compile=args.compile)
    trainer = benchmark_trainer(config, official_semantics=path == "plain")
    # Trainer.fit sets cudnn.benchmark and TF32 for its run (run_backend_flags); this script
    # calls train_iteration directly, so it sets them itself: the plain path is float32 for real.
    trainer.bench_tf32 = path == "fast" and trainer.device.type == "cuda"
    _set_tf32(trainer)
    if trainer.device.type == "cuda":  # as Trainer.fit runs (both paths: it changes no result)
        import torch

        torch.backends.cudnn.benchmark = True
    return trainer


def _set_tf32(trainer) -> None:
    """Apply the path's TF32 setting (global flags: set before each iteration for --interleave)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = trainer.bench_tf32
    torch.backends.cudnn.allow_tf32 = trainer.bench_tf32


def _timed(trainer) -> float:
    import torch

    _set_tf32(trainer)
    start = time.perf_counter()
    losses = trainer.train_iteration()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    assert torch.isfinite(losses).all(), "non-finite losses in the benchmark"
    return time.perf_counter() - start


def _median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def _figures(args, trainer, path, times, warmup_s, peak_mb, memory_kind) -> dict:
    import torch

    device = trainer.device
    median = _median(times)
    return {
        "path": path,
        "it_per_s": 1.0 / median,  # from the median iteration: robust to a busy machine
        "s_per_it": median,
        "mean_s_per_it": sum(times) / len(times),
        "min_s_per_it": min(times),
        "images_per_s": trainer.images_per_iteration / median,  # counted as the trainer counts them
        "peak_mem_mb": None if peak_mb is None else round(peak_mb, 1),
        "memory": memory_kind,
        "warmup_s": round(warmup_s, 2),
        "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "off",
        "tf32": bool(trainer.bench_tf32) if device.type == "cuda" else None,
        "channels_last": trainer.tc.channels_last,
        "compile": trainer.tc.compile,
        "d_grads_in_g_step": not trainer.freeze_d,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def _peak(trainer):
    import torch

    if trainer.device.type == "cuda":
        return torch.cuda.max_memory_allocated(trainer.device) / 2**20, "torch.cuda.max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS (getrusage)"  # kB on Linux


def measure(args: argparse.Namespace, path: str) -> dict:
    """Run one path in this process and return its figures."""
    import torch

    trainer = _trainer(args, path)
    warmup_s = sum(_timed(trainer) for _ in range(args.warmup))
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    times = [_timed(trainer) for _ in range(args.steps)]
    return _figures(args, trainer, path, times, warmup_s, *_peak(trainer))


def measure_interleaved(args: argparse.Namespace, paths) -> dict:
    """Both paths in one process, iterations alternating: a fair ratio on a busy machine."""
    trainers = {path: _trainer(args, path) for path in paths}
    warm = {path: sum(_timed(t) for _ in range(args.warmup)) for path, t in trainers.items()}
    times = {path: [] for path in paths}
    for _ in range(args.steps):
        for path, t in trainers.items():
            times[path].append(_timed(t))
    return {path: _figures(args, t, path, times[path], warm[path], None, "not separated (--interleave)")
            for path, t in trainers.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="synthetic-flat")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=10, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated: fast, plain")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--interleave", action="store_true",
                        help="time both paths in one process, alternating iterations (no memory figures)")
    parser.add_argument("--only", choices=PATHS, help=argparse.SUPPRESS)  # internal: one path, this process
    args = parser.parse_args(argv)
    if args.batch_size is None:
        from redo_lib import get_preset

        args.batch_size = get_preset(args.preset).train.batch_size

    if args.only:
        print(json.dumps(measure(args, args.only)))
        return 0

    paths = args.paths.split(",")
    for path in paths:
        if path not in PATHS:
            parser.error(f"unknown path {path!r}; choose from {', '.join(PATHS)}")
    results = {}
    if args.interleave:
        results = measure_interleaved(args, paths)
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json"]
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for path in paths if not args.interleave else ():
        if "--batch-size" not in forwarded:
            forwarded += ["--batch-size", str(args.batch_size)]
        done = subprocess.run([sys.executable, os.path.abspath(__file__), *forwarded, "--only", path],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        results[path] = json.loads(done.stdout.strip().splitlines()[-1])
    summary = {"preset": args.preset, "batch_size": args.batch_size, "steps": args.steps,
               "warmup": args.warmup, **{path: r for path, r in results.items()}}
    if "fast" in results and "plain" in results:
        summary["speedup"] = results["fast"]["it_per_s"] / results["plain"]["it_per_s"]
        summary["it_per_s"] = results["fast"]["it_per_s"]
        summary["peak_mem_mb"] = results["fast"]["peak_mem_mb"]
    summary["mode"] = "interleaved" if args.interleave else "separate processes"
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"preset {args.preset}, batch {args.batch_size}, {args.steps} timed iterations after {args.warmup}")
        for path, r in results.items():
            print(f"  {path:5s}: {r['it_per_s']:.3f} it/s (median {r['s_per_it']:.3f} s/it, mean {r['mean_s_per_it']:.3f}, "
                  f"{r['images_per_s']:.1f} img/s), "
                  f"peak {r['peak_mem_mb']} MB [{r['memory']}], amp {r['amp']}, channels-last "
                  f"{r['channels_last']}, compile {r['compile']}, on {r['device']} ({r['device_name']})")
        if "speedup" in summary:
            print(f"  fast / plain: x{summary['speedup']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
