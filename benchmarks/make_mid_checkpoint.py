r"""Re-run the shipped ``synthetic-flat`` run with frequent evaluation and keep its resume states.

Chapter "Training" continues the shipped run live from just before its masks move onto
the objects (ReDO, Chen et al. 2019, Sec. 4: the masks first ignore the image, then follow
the objects). This script re-runs the command of ``data/checkpoints/README.md``
(``synthetic-flat.pt``: the preset, seed 0) with the configuration read from the shipped
log, changing only options that do not change what a step computes (``eval_every``,
``steps``, ``time_limit_minutes``; see ``RESUMABLE_OPTIONS``), and copies the full resume
state (``last.pt``: networks, optimisers, data stream and random generators) at every
evaluation to ``SNAPSHOTS/iter_NNNNNN.pt``. At the end it prints its validation IoUs beside
the shipped log's at the shared iterations, and the window of ``--window`` iterations in
which the IoU rises most.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/make_mid_checkpoint.py \
        --out runs/mid/synthetic-flat/seed0 --steps 1500 --eval-every 50
    cp runs/mid/synthetic-flat/seed0/snapshots/iter_001000.pt data/checkpoints/synthetic-flat-mid.pt
    cp runs/mid/synthetic-flat/seed0/metrics.jsonl data/checkpoints/synthetic-flat-mid_metrics.jsonl

(Then ``python tools/write_manifest.py``.) Evaluation runs in eval mode and draws no
random numbers from the training streams, so the trajectory does not depend on
``eval_every``: the printed comparison checks it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redo_lib.config import ReDOConfig  # noqa: E402
from redo_lib.data import load_dataset  # noqa: E402
from redo_lib.training import Trainer  # noqa: E402

SHIPPED_LOG = ROOT / "data" / "checkpoints" / "synthetic-flat_metrics.jsonl"


def shipped_config(log: Path = SHIPPED_LOG) -> ReDOConfig:
    """The configuration the shipped run recorded in its ``start`` line."""
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("event") == "start":
            return ReDOConfig.from_dict(record["config"])
    raise SystemExit(f"error: {log} has no start line with a configuration; re-export the shipped run's log")


def shipped_ious(log: Path = SHIPPED_LOG) -> dict:
    """Iteration -> validation IoU of the shipped log."""
    out = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "event" not in record and record.get("iou") is not None:
            out[int(record["iteration"])] = float(record["iou"])
    return out


class SnapshotTrainer(Trainer):
    """A :class:`Trainer` that copies ``last.pt`` after every evaluation."""

    snapshots: Path

    def _evaluate_and_save(self, scheduled, window):
        restarted = super()._evaluate_and_save(scheduled, window)
        if not restarted:
            shutil.copyfile(self.out / "last.pt", self.snapshots / f"iter_{self.iterations:06d}.pt")
        return restarted


def rises(ious: dict, window: int):
    """(start, end, rise) of every pair of logged iterations ``window`` apart, largest rise first."""
    pairs = [(a, a + window, ious[a + window] - ious[a]) for a in ious if a + window in ious]
    return sorted(pairs, key=lambda p: -p[2])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/mid/synthetic-flat/seed0", help="run folder (must not hold a run)")
    parser.add_argument("--steps", type=int, default=1500, help="iterations to run")
    parser.add_argument("--eval-every", type=int, default=50, help="iterations between evaluations")
    parser.add_argument("--window", type=int, default=400, help="iterations of the live continuation (chapter 7)")
    args = parser.parse_args(argv)

    config = shipped_config()
    config.train.steps, config.train.eval_every = args.steps, args.eval_every
    config.train.time_limit_minutes = 0.0
    out = Path(args.out)
    if (out / "last.pt").exists():
        raise SystemExit(f"error: {out} already holds a run (last.pt); choose another --out")
    snapshots = out / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    t = config.train
    train_set = load_dataset(t.dataset, None, "train", image_size=config.model.image_size)
    val_set = load_dataset(t.dataset, None, "val", image_size=config.model.image_size)
    trainer = SnapshotTrainer(config, out, train_set, val_set, progress=True)
    trainer.snapshots = snapshots
    trainer.fit()

    mine = {int(r["iteration"]): float(r["iou"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "event" not in r and r.get("iou") is not None}
    shipped = shipped_ious()
    print("iteration  this run  shipped  difference")
    for it in sorted(set(mine) & set(shipped)):
        print(f"{it:9d}  {mine[it]:.4f}   {shipped[it]:.4f}  {mine[it] - shipped[it]:+.4f}")
    print(f"largest rises over {args.window} iterations (this run):")
    for start, end, rise in rises(mine, args.window)[:5]:
        print(f"  {start} -> {end}: {mine[start]:.3f} -> {mine[end]:.3f} ({rise:+.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
