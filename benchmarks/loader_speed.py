"""Training images per second of the trainer's own data pipeline (a measurement, not a test).

The pipeline is built by :func:`redo_lib.training.data.data_pipeline`, the function
:class:`redo_lib.training.Trainer` calls: the same workers, image cache (its estimate is
printed to stderr) and :class:`~redo_lib.training.data.BatchFetcher`, with the preset's
batch size (the preset named like the data set; ``--batch-size`` overrides it). Each of
``--epochs`` epochs takes ``BatchFetcher.next()`` once per batch of the epoch and is timed
on its own; the first includes the first pass that fills the cache.

Output (``--json``: one JSON line on stdout): ``first_epoch_images_per_s``,
``images_per_s`` (the last epoch), ``n_images`` (the training split), and the settings.

Usage::

    python benchmarks/loader_speed.py --dataset flowers --data-root data/flowers --image-size 128 --epochs 3 --json
    python benchmarks/loader_speed.py --dataset flowers --data-root DIR --no-cache-images   # decode every batch

Issue 17's target: >= 1,500 training images per second at 128 x 128 after the first pass
on a 2-core machine (an H100 at 15 it/s and batch 25 consumes about 750).

On a commit from before ``data_pipeline`` existed (1ca6f36 and earlier), the script builds
the fetcher as that trainer did, ``BatchFetcher(train_set, stream, device, num_workers)``
with ``num_workers = train.num_workers`` (0 on the CPU), so that one timing loop measures
before and after.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import List


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="data set name (flowers, lfw, cub, folder, ...)")
    parser.add_argument("--data-root", default=None, metavar="DIR", help="the data set's folder")
    parser.add_argument("--image-size", type=int, default=128, metavar="S")
    parser.add_argument("--epochs", type=int, default=3, metavar="N", help="epochs timed (the first fills the cache)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="B", help="default: the preset's")
    parser.add_argument("--num-workers", type=int, default=None, metavar="N", help="train.num_workers (default: the preset's)")
    parser.add_argument("--no-cache-images", action="store_true", help="train.cache_images = false")
    parser.add_argument("--device", default="cpu", help="where the batches go (cpu, cuda)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar, no notes on stderr")
    parser.add_argument("--json", action="store_true", help="one JSON line on stdout")
    return parser


def _train_config(args: argparse.Namespace):
    from redo_lib.config import PRESETS, TrainConfig, get_preset

    train = get_preset(args.dataset).train if args.dataset in PRESETS else TrainConfig(dataset=args.dataset)
    if args.batch_size is not None:
        train.batch_size = args.batch_size
    if args.num_workers is not None:
        train.num_workers = args.num_workers
    if hasattr(train, "cache_images"):
        train.cache_images = not args.no_cache_images
    elif args.no_cache_images:
        raise ValueError("--no-cache-images: this version of redo_lib has no image cache")
    return train


def build_fetcher(train, train_set, device, log):
    """The trainer's fetcher for ``train_set`` (no validation split: training reads only)."""
    from redo_lib.training import data as pipeline

    stream = pipeline.BatchStream(len(train_set), train.batch_size, train.seed)
    if hasattr(pipeline, "data_pipeline"):
        return pipeline.data_pipeline(train, train_set, None, stream, device, log=log or (lambda message: None),
                                      progress=log is not None)
    return train.num_workers, pipeline.BatchFetcher(train_set, stream, device, train.num_workers)


def time_epochs(fetcher, epochs: int) -> List[float]:
    """Seconds of each of ``epochs`` epochs of ``fetcher.next()`` calls (one per batch)."""
    import torch

    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _ in range(fetcher.stream.batches_per_epoch):
            images = fetcher.next()
        if images.device.type == "cuda":
            torch.cuda.synchronize(images.device)
        seconds.append(time.perf_counter() - start)
    return seconds


def measure(args: argparse.Namespace) -> dict:
    import torch

    from redo_lib.data import load_dataset

    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    train = _train_config(args)
    train.seed = args.seed
    train_set = load_dataset(args.dataset, args.data_root, "train", image_size=args.image_size)
    log = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    num_workers, fetcher = build_fetcher(train, train_set, torch.device(args.device), log)
    seconds = time_epochs(fetcher, args.epochs)
    per_epoch = fetcher.stream.batches_per_epoch * train.batch_size
    cache = getattr(train_set, "cache", None)
    return {
        "dataset": args.dataset,
        "image_size": args.image_size,
        "batch_size": train.batch_size,
        "device": args.device,
        "num_workers": num_workers,
        "cache_images": cache is not None,
        "epochs": args.epochs,
        "n_images": len(train_set),
        "images_per_epoch": per_epoch,
        "epoch_seconds": [round(s, 4) for s in seconds],
        "first_epoch_images_per_s": round(per_epoch / seconds[0], 1),
        "images_per_s": round(per_epoch / seconds[-1], 1),
    }


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from redo_lib.data.errors import DataError
    except ImportError:  # pragma: no cover
        DataError = OSError
    try:
        result = measure(args)
    except (DataError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        print(f"{result['dataset']} train: {result['n_images']} images at {result['image_size']} px, "
              f"batch {result['batch_size']}, {result['num_workers']} worker(s), "
              f"cache {'on' if result['cache_images'] else 'off'}")
        print(f"first epoch: {result['first_epoch_images_per_s']:,.0f} images/s; "
              f"last epoch: {result['images_per_s']:,.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
