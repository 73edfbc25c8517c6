"""Sizes of a run's ``last.pt`` (resume state) and ``best.pt`` (networks only), per preset.

Each preset's networks and Adam optimisers are built on the CPU (both moments of every
parameter filled, as after the first iteration) and saved exactly as training saves them,
into a temporary folder; the sizes are those of the real files
(:func:`redo_lib.training.checkpoint.checkpoint_sizes`). A ``redo train --backup-dir``
folder holds one of each per seed; on Google Drive every replaced copy also stays in the
bin (and counts against the quota) until the bin is emptied.

Usage::

    python benchmarks/checkpoint_sizes.py                       # every preset, a table
    python benchmarks/checkpoint_sizes.py --preset flowers --json
    python benchmarks/checkpoint_sizes.py --folder /content      # measure on that disk

Needs about three times the largest ``last.pt`` in memory (LFW: about 5 GB) and its
size in free space under ``--folder`` (default: the system's temporary folder).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from redo_lib.config import PRESETS, get_preset  # noqa: E402
from redo_lib.training.checkpoint import checkpoint_sizes, format_bytes  # noqa: E402


def measure(presets, folder=None):
    """``{preset: {"last": bytes, "best": bytes, "parameters": n}}``, one preset at a time."""
    from tqdm.auto import tqdm

    from redo_lib.model import ReDO

    results = {}
    for name in tqdm(presets, desc="presets", file=sys.stderr, disable=None):
        config = get_preset(name)
        sizes = checkpoint_sizes(config, folder=folder)
        sizes["parameters"] = sum(p.numel() for p in ReDO(config.model).parameters())
        results[name] = sizes
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", action="append", choices=list(PRESETS),
                        help="a preset (repeatable; default: every preset)")
    parser.add_argument("--folder", default=None, help="where the temporary files are written")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.folder and not os.path.isdir(args.folder):
        print(f"error: --folder {args.folder}: not a folder", file=sys.stderr)
        return 2
    try:
        results = measure(args.preset or list(PRESETS), args.folder)
    except OSError as error:  # CheckpointSaveError included: one line, what to do
        print(f"error: {error}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{'preset':<16} {'parameters':>12} {'last.pt':>10} {'best.pt':>10}")
    for name, r in results.items():
        print(f"{name:<16} {r['parameters']:>12,} {format_bytes(r['last']):>10} {format_bytes(r['best']):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
