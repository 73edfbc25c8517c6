"""Is the ground truth a stable point of ReDO's objective at this scale?

ReDO's claim (paper section 3): with independent object and background, redrawing a region
keeps the image realistic only when the region is an object, so the adversarial game is
won by the true masks. This script tests that claim directly, for one configuration:

1. warm start: F is trained *with supervision* (binary cross-entropy on the ground-truth
   masks of the training split) for ``--pretrain-steps`` steps, so it starts near the truth;
2. warm-up: the ordinary ReDO loop runs with F held fixed (``train.mask_warmup``) for
   ``--warmup`` iterations, so that G_k, D and delta adapt to those masks;
3. release: F trains with the unsupervised objective alone for the remaining iterations.

If the truth is a stable point, the validation IoU stays where the warm start left it (or
rises) after the release; if it falls, the objective at this scale moves F away from the
truth, and no amount of training from scratch will reach it. At the release and at the
end it also measures whether the object's generator G_0 can paint what the objects look
like (:func:`redo_lib.texture.redraw_texture`, on the true masks of 256 validation
images: the colour spread and edge energy of its redraws against the real objects'): a
generator that paints flat blobs cannot fool D on textured objects, so the outline earns
F nothing. It measures and prints (a table of the validation IoU and the smaller region's
share, the texture ratios, and with ``--json`` one JSON object); it is not a test.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/mask_stability.py --preset synthetic-flat
    python benchmarks/mask_stability.py --preset synthetic-flat --set model.nf_gen=32 --warmup 2500
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from redo_lib.cli import apply_set, load_split  # noqa: E402
from redo_lib.config import get_preset  # noqa: E402
from redo_lib.texture import redraw_texture  # noqa: E402
from redo_lib.training import Trainer  # noqa: E402
from redo_lib.training.data import iterate_batches  # noqa: E402
from redo_lib.viz import load_metrics  # noqa: E402


def supervised_warm_start(mask_net, dataset, steps: int, lr: float, batch_size: int, seed: int) -> float:
    """Train F on the ground-truth masks (K = 2: region 0 = the object); returns the last loss."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(mask_net.parameters(), lr=lr, betas=(0.0, 0.9))
    device = next(mask_net.parameters()).device
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(len(dataset), (batch_size,), generator=g).tolist()
        batch = next(iterate_batches(dataset, batch_size, indices=idx))
        logits = mask_net.logits(batch["image"].to(device)) / mask_net.temperature
        loss = F.binary_cross_entropy_with_logits(logits, batch["mask"].to(device)[:, :1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


@torch.no_grad()
def region0_shares(mask_net, images: torch.Tensor, truth: torch.Tensor) -> dict:
    """Where F's region 0 lies: the share of the object's pixels and of the background's in
    it, and of the object's pixels of high and of low local contrast (above or below the
    median, over the object pixels, of the mean absolute difference to the 3 x 3 mean)."""
    was_training = mask_net.training
    mask_net.eval()
    device = next(mask_net.parameters()).device
    region0 = (mask_net(images.to(device))[:, 0] >= 0.5).cpu()
    mask_net.train(was_training)
    obj = truth[:, 0] > 0.5
    contrast = (images - F.avg_pool2d(images, 3, 1, 1, count_include_pad=False)).abs().mean(1)
    high = contrast > contrast[obj].median()
    share = lambda where: float(region0[where].float().mean())  # noqa: E731
    return {"object": share(obj), "background": share(~obj),
            "object_high_contrast": share(obj & high), "object_low_contrast": share(obj & ~high)}


def publish(folder: Path, result: dict, grids: dict, argv) -> None:
    """The probe's record for the book: result.json, command.txt, samples_<phase>.png
    (release, after: the first evaluation with F free, last)."""
    folder.mkdir(parents=True, exist_ok=True)
    args = sys.argv[1:] if argv is None else list(argv)
    (folder / "command.txt").write_text(
        "python benchmarks/mask_stability.py " + " ".join(shlex.quote(a) for a in args) + "\n", encoding="utf-8")
    (folder / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for phase, data in grids.items():
        (folder / f"samples_{phase}.png").write_bytes(data)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="synthetic-flat")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                   help="override any configuration option (repeatable)")
    p.add_argument("--pretrain-steps", type=int, default=600)
    p.add_argument("--pretrain-lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=1000, help="iterations with F held fixed")
    p.add_argument("--steps", type=int, default=1600, help="total ReDO iterations (warm-up included)")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--out", default=None, help="run folder (default: a temporary one)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--publish", default=None, metavar="DIR",
                   help="also write result.json, command.txt and the sample grids at the release, at the first "
                        "evaluation after it and at the end (samples_release.png, samples_after.png, "
                        "samples_last.png) to DIR (the book reads data/probes/)")
    args = p.parse_args(argv)

    config = get_preset(args.preset)
    for assignment in args.set:
        apply_set(config, assignment)
    t = config.train
    t.mask_warmup, t.steps, t.eval_every = args.warmup, args.steps, args.eval_every
    t.auto_restart = 0.0  # a restart would throw the warm-started F away
    config.validate()
    if config.model.n_regions != 2:
        p.error("the probe supports K = 2 (one object and the background)")
    train_set = load_split(t.dataset, t.data_root or None, "train", config.model.image_size, 2)
    val_set = load_split(t.dataset, t.data_root or None, "val", config.model.image_size, 2)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        trainer = Trainer(config, out, train_set, val_set, progress=not args.json)
        bce = supervised_warm_start(trainer.model.mask_net, train_set, args.pretrain_steps,
                                    args.pretrain_lr, t.batch_size, t.seed)
        start = trainer.evaluate()["val"]
        probe = val_set.batch(range(min(256, len(val_set))))
        textures = {}
        for phase, until in (("release", args.warmup), ("end", args.steps)):
            t.steps = max(until, trainer.step)  # F fixed until the release, then free
            trainer.fit()
            # can G_0 paint what the objects look like? (on the true masks: the generator alone)
            textures[phase] = redraw_texture(trainer.model.generator, probe["image"], probe["mask"], seed=t.seed)
        shares = region0_shares(trainer.model.mask_net, probe["image"], probe["mask"])
        records = load_metrics(out / "metrics.jsonl", keys=("iou",))
        after = min(args.steps, args.warmup + args.eval_every)  # the first evaluation with F free
        grids = {phase: out / f"samples_{step:06d}.png"
                 for phase, step in (("release", args.warmup), ("after", after), ("last", args.steps))}
        grids = {phase: path.read_bytes() for phase, path in grids.items() if path.is_file()}
    curve = [{"step": r["step"], "iou": r["iou"], "min_region_size": r["min_region_size"],
              "d_loss": r["d_loss"], "info_loss": r["info_loss"]} for r in records]
    at_release = max((r for r in curve if r["step"] <= args.warmup), key=lambda r: r["step"], default=None)
    result = {
        "preset": args.preset, "set": args.set, "pretrain_steps": args.pretrain_steps,
        "pretrain_bce": round(bce, 4), "warmup": args.warmup, "steps": args.steps,
        "iou_after_warm_start": start["iou"],
        "iou_at_release": at_release["iou"] if at_release else start["iou"],
        "iou_final": curve[-1]["iou"] if curve else None,
        "curve": curve,
        "texture": textures,
        "region0_at_end": shares,
    }
    if args.publish:
        publish(Path(args.publish), result, grids, argv)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"warm start: {args.pretrain_steps} supervised steps (BCE {bce:.3f}), val IoU {start['iou']:.3f}")
    print(f"{'step':>6} {'phase':>8} {'val IoU':>8} {'min region':>10} {'D loss':>7} {'info':>6}")
    for r in curve:
        phase = "F fixed" if r["step"] <= args.warmup else "F free"
        print(f"{r['step']:>6} {phase:>8} {r['iou']:>8.3f} {r['min_region_size']:>10.3f} "
              f"{r['d_loss']:>7.3f} {r['info_loss']:>6.3f}")
    for phase, stats in textures.items():
        print(f"texture of G_0's redraws on the true object masks, at the {phase}: colour spread "
              f"{stats['redraw_spread']:.3f} (real objects {stats['real_spread']:.3f}, ratio {stats['spread_ratio']:.2f}); "
              f"edge energy {stats['redraw_edges']:.3f} (real {stats['real_edges']:.3f}, ratio {stats['edge_ratio']:.2f})")
    print(f"region 0 at the end holds {shares['object']:.0%} of the object's pixels "
          f"({shares['object_high_contrast']:.0%} of those of high local contrast, "
          f"{shares['object_low_contrast']:.0%} of the others) and {shares['background']:.0%} of the background's")
    change = result["iou_final"] - result["iou_at_release"]
    print(f"after the release: val IoU {result['iou_at_release']:.3f} -> {result['iou_final']:.3f} "
          f"({change:+.3f}): F {'moved away from' if change < -0.02 else 'held'} its warm start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
