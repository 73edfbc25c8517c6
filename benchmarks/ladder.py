"""The ladder of difficulty: train ReDO on each synthetic level, score it, compare with baselines.

Every run is ``redo train`` with a time limit (``--time-limit``), one thread, so that two
runs share a 2-core machine side by side; after training, the checkpoint with the best
validation IoU is scored on the test split. ``table`` collects every run found under
``--runs`` into one markdown table: validation IoU reached by 10, 30 and 60 minutes
(the best so far, as the trainer keeps it) and the test IoU of the kept checkpoint, beside
the baselines on the same test split.

    python benchmarks/ladder.py list
    python benchmarks/ladder.py train nz3 --dataset synthetic-flat --seed 0 --minutes 30
    python benchmarks/ladder.py baselines --dataset synthetic-flat
    python benchmarks/ladder.py table --runs runs/ladder
    python benchmarks/ladder.py publish --runs runs/ladder --to data/ladder
    python benchmarks/ladder.py train preset --dataset folder-textured --data-root data/folder-textured --steps 10000

With ``--data-root DIR`` a run trains on the ``folder`` data set in DIR (the held-out sets
of ``folder_sets.py``); ``--dataset`` then only names the run's folder.

A run's folder is ``RUNS/<dataset>/<setting>/seed<S>``; the command that made it is in
its ``command.txt``, its curve in ``metrics.jsonl``, its test score in ``test.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

def _setting(nz: int, lr_mask: float, lr_disc: float = 4e-4, nf_disc: int = 16, lr_gen: float = 2e-4,
             batch_size: int = 16, lambda_z: float = 10.0, d_steps: int = 1) -> List[str]:
    """Explicit values for every option the experiments varied, so that a setting means
    the same run whatever the preset's defaults become."""
    return ["--set", f"model.nz={nz}", "--lr-mask", f"{lr_mask:g}", "--lr-disc", f"{lr_disc:g}",
            "--set", f"model.nf_disc={nf_disc}", "--set", f"optim.lr_gen={lr_gen:g}",
            "--batch-size", str(batch_size), "--set", f"loss.lambda_z={lambda_z:g}",
            "--set", f"train.d_steps={d_steps}"]


#: named settings: ``redo train --preset synthetic-flat`` options. Each was compared with the
#: one it differs from by one change (the book's chapter "What makes ReDO learn").
SETTINGS: Dict[str, List[str]] = {
    "nz8": _setting(8, 1e-4),  # the synthetic preset before the ladder
    "nz3": _setting(3, 1e-4),  # a code no longer than a flat colour can carry (R, G, B)
    "nz3-D32": _setting(3, 1e-4, nf_disc=32),
    "nz3-lrF3e-4": _setting(3, 3e-4),
    "nz3-lrF3e-4-D32": _setting(3, 3e-4, nf_disc=32),
    "nz3-lrF3e-4-lrD1e-3": _setting(3, 3e-4, lr_disc=1e-3),
    "nz3-lrF1e-3": _setting(3, 1e-3),
    "nz3-lrF3e-4-lrG5e-4": _setting(3, 3e-4, lr_gen=5e-4),
    "nz3-lrF3e-4-B8": _setting(3, 3e-4, batch_size=8),
    "nz3-lrF3e-4-lz5": _setting(3, 3e-4, lambda_z=5.0),  # the official information weight
    "nz3-lrF3e-4-Dsteps2": _setting(3, 3e-4, d_steps=2),
    "nz3-lrF3e-4-Dsteps3": _setting(3, 3e-4, d_steps=3),
    # the textured climb: the flat-level settings (d_steps 3) with a longer code, room for patterns
    "nz8-lrF3e-4-Dsteps3": _setting(8, 3e-4, d_steps=3),
    "nz16-lrF3e-4-Dsteps3": _setting(16, 3e-4, d_steps=3),
    "nz32-lrF3e-4-Dsteps3": _setting(32, 3e-4, d_steps=3),
    "preset": [],  # the current synthetic preset, as it is
    # an addition (not ReDO): PerturbGAN's minimum-area hinge, every region >= 10 % of its image
    # (the textured folder set's objects cover 15-40 %), against the slow collapse of a region
    "preset-min-area0.1": ["--min-area", "0.1"],
    # with it, PerturbGAN's binarisation term (weight 2): the hinge alone never acts on the
    # textured folder set, whose vanishing region is a faint haze (soft share 0.2, hard 0.05)
    "preset-min-area0.1-bin2": ["--min-area", "0.1", "--binarization", "2"],
}

BASELINE_NAMES = ("all-foreground", "centred-disk", "kmeans", "grabcut", "iem")
MINUTES = (10, 30, 60)


def _redo() -> List[str]:
    return [sys.executable, "-m", "redo_lib.cli"]


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_dir(runs: Path, dataset: str, setting: str, seed: int, image_size: Optional[int], k: int) -> Path:
    tag = setting + (f"-{image_size}px" if image_size else "") + (f"-K{k}" if k != 2 else "")
    return runs / dataset / tag / f"seed{seed}"


def _data(args: argparse.Namespace) -> List[str]:
    """``redo`` options that pick the data: a level by name, or the folder set in ``--data-root``."""
    if args.data_root:
        return ["--dataset", "folder", "--data-root", args.data_root]
    return ["--dataset", args.dataset]


def train(args: argparse.Namespace) -> int:
    if args.setting not in SETTINGS:
        raise SystemExit(f"unknown setting {args.setting!r}; valid: {', '.join(SETTINGS)}")
    out = run_dir(Path(args.runs), args.dataset, args.setting, args.seed, args.image_size, args.k)
    command = [*_redo(), "train", "--preset", "synthetic-flat", *_data(args), "--seed", str(args.seed),
               "--steps", str(args.steps or 1000000), "--out", str(out), "--quiet", *SETTINGS[args.setting]]
    if args.steps:  # a budget of iterations in all, automatic restarts included
        command += ["--max-iterations", str(args.steps)]
    else:
        command += ["--time-limit", str(args.minutes)]

    if args.image_size:
        command += ["--image-size", str(args.image_size)]
    if args.k != 2:
        command += ["--set", f"model.n_regions={args.k}"]
    out.mkdir(parents=True, exist_ok=True)
    # the run's command, whether this call starts it or resumes it
    (out / "command.txt").write_text(" ".join(["redo", *command[3:]]) + "\n")
    if (out / "last.pt").exists():
        command.append("--resume")
    code = subprocess.call(command, env=_env())
    if code:
        return code
    if args.k == 2:
        score = subprocess.run([*_redo(), "evaluate", "--checkpoint", str(out / "best.pt"), "--split", "test",
                                "--json"], env=_env(), check=True, capture_output=True, text=True)
        (out / "test.json").write_text(score.stdout)
        print(score.stdout.strip())
    return 0


def baselines(args: argparse.Namespace) -> int:
    out = Path(args.runs) / args.dataset
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in BASELINE_NAMES:
        score = subprocess.run([*_redo(), "evaluate", "--baseline", name, *_data(args), "--split", "test",
                                "--image-size", str(args.image_size), "--json"], env=_env(), check=True,
                               capture_output=True, text=True)
        results[name] = json.loads(score.stdout)
        print(name, results[name]["iou"], f"{1000 * results[name]['seconds_per_image']:.2f} ms per image")
    _write_atomic(out / f"baselines-{args.image_size}px.json", json.dumps(results, indent=1))
    return 0


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def best_by(records: List[dict], minutes: float) -> Optional[float]:
    """The best validation IoU reached within ``minutes`` of training (None: the run was shorter).

    A run stopped by ``--time-limit M`` ends with an evaluation a few seconds past M
    minutes; a 2 % tolerance counts it at M.
    """
    seen = [r["iou"] for r in records if r["seconds"] <= 60 * minutes * 1.02]
    if not records or records[-1]["seconds"] < 60 * minutes * 0.97:
        return None
    return max(seen) if seen else None


def table(args: argparse.Namespace) -> int:
    from redo_lib import ladder

    root = Path(args.runs)
    lines = ["| data set | setting | seed | iterations | val IoU by 10 / 30 / 60 min | test IoU (kept checkpoint) |",
             "|---|---|---|---|---|---|"]
    rows = []
    for folder in sorted(p for p in root.glob("*/*") if p.is_dir()):
        dataset, setting = folder.parent.name, folder.name
        for seed in ladder.seeds(dataset, setting, root):
            records = ladder.runs(dataset, setting, root, keys=("iou",))[f"{setting} seed {seed}"]
            if not records:
                continue
            cells = [best_by(records, m) for m in MINUTES]
            scores = ladder.test_scores(dataset, setting, seed, root)
            test = None if scores is None else scores["iou"]
            row = {"dataset": dataset, "setting": setting, "seed": seed, "iterations": records[-1]["iteration"],
                   "val_iou_by_minutes": dict(zip(MINUTES, cells)), "test_iou": test}
            rows.append(row)
            fmt = " / ".join("-" if c is None else f"{c:.3f}" for c in cells)
            lines.append(f"| {dataset} | {setting} | {seed} | {row['iterations']} | {fmt} | "
                         f"{'-' if test is None else f'{test:.3f}'} |")
    lines += ["", "| data set | " + " | ".join(BASELINE_NAMES) + " |", "|---|" + "---|" * len(BASELINE_NAMES)]
    for path in sorted(root.glob("*/baselines-*.json")):
        size = int(path.stem.split("-")[-1][:-2])
        scores = ladder.baselines(path.parent.name, size, root)
        lines.append(f"| {path.parent.name} ({size}px) | " + " | ".join(
            f"{scores[n]:.3f}" if n in scores else "-" for n in BASELINE_NAMES) + " |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def publish(args: argparse.Namespace) -> int:
    """Copy each run's small files (curve, command, test score, sample grids) to ``--to``.

    What the book's chapter "What makes ReDO learn" reads: ``TO/<dataset>/<setting>/seed<S>/``
    with ``metrics.jsonl``, ``command.txt``, ``test.json``, ``samples_last.png`` (the last
    grid) and ``samples_best.png`` (the grid at the kept checkpoint's iteration: the
    newest evaluation that improved on the best, where the run saved one), and
    ``TO/<dataset>/baselines-<S>px.json``.
    """
    import shutil

    from redo_lib.training.trainer import samples_path
    from redo_lib.viz import load_metrics

    runs, to = Path(args.runs), Path(args.to)
    for metrics in sorted(runs.glob("*/*/seed*/metrics.jsonl")):
        run = metrics.parent
        target = to / run.relative_to(runs)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "command.txt", "test.json"):
            if (run / name).exists():
                shutil.copyfile(run / name, target / name)
        scored = load_metrics(metrics, keys=("iou",))
        last = scored[-1] if scored else None
        kept = next((r for r in reversed(scored) if r.get("is_best")), None)
        for name, record in (("samples_last.png", last), ("samples_best.png", kept)):
            if record is None:
                continue
            grid = samples_path(run, record.get("restart", 0), record["step"])
            if grid.is_file():
                shutil.copyfile(grid, target / name)
        print(target)
    for path in sorted(runs.glob("*/baselines-*.json")):
        (to / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, to / path.parent.name / path.name)
    return 0


def pin(args: argparse.Namespace) -> int:
    """Make every stored command spell out the recipe its run recorded.

    A command that leaves an option to the preset means another run once the preset
    changes. For each run under ``--runs`` whose ``command.txt`` no longer gives the recipe
    recorded in its ``metrics.jsonl`` (:func:`redo_lib.ladder.recipe`), append
    ``--set section.option=value`` for each option that differs.
    """
    from redo_lib import ladder

    root = Path(args.runs)
    for folder in sorted(p for p in root.glob("*/*/seed*") if (p / "metrics.jsonl").is_file()):
        dataset, setting, seed = folder.parent.parent.name, folder.parent.name, int(folder.name[4:])
        recorded = ladder.recorded_config(dataset, setting, seed, root)
        if recorded is None:
            continue
        wanted, given = ladder.recipe(recorded), ladder.recipe(ladder.config_of_command(dataset, setting, seed, root))
        missing = [f"--set {key}={wanted[key]}" for key in wanted if given[key] != wanted[key]]
        if missing:
            command = (folder / "command.txt").read_text().strip()
            (folder / "command.txt").write_text(" ".join([command, *missing]) + "\n")
            print(f"{folder}: {' '.join(missing)}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/ladder", help="folder of the runs (default runs/ladder)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the named settings")
    t = sub.add_parser("train", help="one run of one setting on one level")
    t.add_argument("setting")
    t.add_argument("--dataset", default="synthetic-flat")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--minutes", type=float, default=30.0, help="time limit (when --steps is not given)")
    t.add_argument("--steps", type=int, help="train this many iterations in all (automatic restarts "
                   "included) instead of --minutes")
    t.add_argument("--image-size", type=int)
    t.add_argument("--k", type=int, default=2, help="regions (3: two objects)")
    t.add_argument("--data-root", help="train on the folder data set in this folder (--dataset names the run)")
    b = sub.add_parser("baselines", help="the five baselines (IEM included) on a level's test split")
    b.add_argument("--dataset", default="synthetic-flat")
    b.add_argument("--image-size", type=int, default=32)
    b.add_argument("--data-root", help="score the folder data set in this folder (--dataset names the result)")
    s = sub.add_parser("table", help="one table of every run and baseline under --runs")
    s.add_argument("--json", help="also write the rows as JSON here")
    p = sub.add_parser("publish", help="copy the runs' curves, commands and scores to a folder")
    p.add_argument("--to", default="data/ladder")
    sub.add_parser("pin", help="make every stored command spell out the recipe its run recorded")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, options in SETTINGS.items():
            print(f"{name:14s} redo train --preset synthetic-flat {' '.join(options)}")
        return 0
    return {"train": train, "baselines": baselines, "table": table, "publish": publish, "pin": pin}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
