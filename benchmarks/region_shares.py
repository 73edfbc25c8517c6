"""How much of each image the smaller region holds, soft and thresholded, per checkpoint.

A region can vanish in two ways: its soft mask falls towards 0 everywhere, or it stays a
faint haze below the 0.5 threshold, which the scores read as empty. A loss on the soft
masks (the minimum-area hinge, ``--min-area``) sees only the first. For each checkpoint
this prints, over the first ``--images`` validation images, quantiles of the smaller
region's soft share (the mean of its soft mask) and hard share (its pixels at >= 0.5 for
K = 2, argmax otherwise), from :func:`redo_lib.metrics.region_shares`.

Usage::

    python benchmarks/region_shares.py runs/ladder/folder-textured/preset/seed1/last.pt \\
        --dataset folder --data-root data/folder-textured
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from redo_lib.data import load_dataset  # noqa: E402
from redo_lib.metrics import region_shares  # noqa: E402
from redo_lib.training.checkpoint import load_model  # noqa: E402

QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)


def smaller_region_shares(checkpoint, dataset: str, data_root: str, n_images: int) -> dict:
    """``{"iteration", "soft", "hard"}``: quantiles (``QUANTILES``) of the smaller region's share
    per image, the smaller region chosen per image by its soft share."""
    model, config = load_model(checkpoint)
    model.eval()
    data = load_dataset(dataset or config.train.dataset, data_root or None, "val",
                        image_size=config.model.image_size)
    images = torch.stack([data[i]["image"] for i in range(min(n_images, len(data)))])
    with torch.no_grad():
        shares = region_shares(model.mask_net(images))
    smaller = shares["soft"].argmin(dim=1, keepdim=True)
    q = torch.tensor(QUANTILES)
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)
    iteration = stored.get("iterations", stored.get("step"))  # in all (restarts included) where recorded
    return {"iteration": iteration,
            "soft": shares["soft"].gather(1, smaller)[:, 0].quantile(q).tolist(),
            "hard": shares["hard"].gather(1, smaller)[:, 0].quantile(q).tolist()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="best.pt or last.pt files")
    p.add_argument("--dataset", default="", help="data set name (default: the checkpoint's)")
    p.add_argument("--data-root", default="", help="where the data set lives (folder data sets)")
    p.add_argument("--images", type=int, default=200, help="validation images (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object per checkpoint")
    args = p.parse_args(argv)
    for path in args.checkpoints:
        if not os.path.isfile(path):
            raise SystemExit(f"error: checkpoint not found: {path}")
        result = smaller_region_shares(path, args.dataset, args.data_root, args.images)
        if args.json:
            print(json.dumps({"checkpoint": path, **result}))
            continue
        print(f"{path} (iteration {result['iteration']}), smaller region per image, quantiles {QUANTILES}:")
        for kind in ("soft", "hard"):
            print(f"  {kind}: " + "  ".join(f"{v:.3f}" for v in result[kind]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
