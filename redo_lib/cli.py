"""The ``redo`` command (also ``python -m redo_lib``).

Sub-commands::

    redo train --preset NAME [--dataset NAME] [--data-root DIR] [--out DIR] [--steps N]
               [--batch-size B] [--image-size S] [--device auto|cpu|cuda] [--seed S]
               [--resume] [--backup-dir DIR] [--backup-every N]
               [--eval-every N] [--amp] [--compile] [--no-channels-last]
               [--lr-mask LR] [--lr-gen LR] [--lr-disc LR] [--lr-info LR]
               [--set section.option=value ...] [--tensorboard] [--print-config]
    redo evaluate (--checkpoint FILE | --baseline NAME) [--dataset NAME] [--data-root DIR]
                  [--split test] [--image-size S] [--json]
    redo redraw --checkpoint FILE [--dataset NAME] [--n-images 4] [--n-z 4] [--seed 0] --output FILE.png
    redo convert-official INPUT.pth OUTPUT.pt
    redo export CHECKPOINT.pt OUTPUT.pt
    redo data {download,check,list} ...

``--steps`` is the number of iterations of the run: ``redo train --resume --out DIR
--steps N`` continues the run in DIR up to N. An automatic restart (a collapse before
``train.auto_restart_until``) starts the count again from 0; ``--max-iterations N`` stops
after N iterations in all, restarts included. Several GPUs: ``torchrun --nproc_per_node G
-m redo_lib train ...`` (``--batch-size`` is per process).

Colab with Google Drive: ``redo train --out /content/runs/seed0 --backup-dir
/content/drive/MyDrive/redo/seed0`` writes ``last.pt`` (the full resume state) to the local
disk at every evaluation and keeps Drive's share small: ``best.pt`` (networks only) and
``metrics.jsonl`` at every evaluation, ``last.pt`` every ``--backup-every`` evaluations
(default 4) and when the run stops. In a new session, ``redo train --resume --out
/content/runs/seed0 --backup-dir /content/drive/MyDrive/redo/seed0`` finds no ``last.pt``
on the local disk and resumes from the one on Drive (it says which file and which step).

User errors (bad values, missing files, incompatible checkpoints, data problems) print a
single ``error: ...`` line and exit with status 2; a diverged run exits with status 1; a
checkpoint that cannot be written (full disk or Drive, quota, I/O error) stops the run with
one line naming the file, the space it needed and the free space, and exits with status 3
(the previous checkpoint is intact: free space, then rerun with ``--resume``).
Set ``REDO_DEBUG=1`` to see the traceback instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["main", "build_parser", "apply_set", "UsageError"]

EXIT_USAGE = 2
EXIT_DIVERGED = 1
EXIT_SAVE_FAILED = 3


class UsageError(ValueError):
    """A command-line mistake (printed as one ``error:`` line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


# ----------------------------------------------------------------------------- configuration
def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {text!r}")


def apply_set(config, assignment: str) -> None:
    """Apply one ``section.option=value`` to a :class:`~redo_lib.ReDOConfig` in place."""
    if "=" not in assignment:
        raise UsageError(f"--set {assignment!r}: expected section.option=value")
    key, value = assignment.split("=", 1)
    key = key.strip()
    sections = [f.name for f in dataclasses.fields(config)]
    if "." not in key:
        raise UsageError(f"--set {key!r}: expected section.option (sections: {', '.join(sections)})")
    section_name, option = key.split(".", 1)
    if section_name not in sections:
        raise UsageError(f"--set {key!r}: unknown section {section_name!r}; valid sections: {', '.join(sections)}")
    section = getattr(config, section_name)
    fields = {f.name: f for f in dataclasses.fields(section)}
    if option not in fields:
        raise UsageError(f"--set {key!r}: unknown option {option!r} in section '{section_name}'; "
                         f"valid options: {', '.join(fields)}")
    current = getattr(section, option)
    try:
        if isinstance(current, bool):
            parsed: Any = _parse_bool(value)
        elif isinstance(current, int):
            parsed = int(value)
        elif isinstance(current, float):
            parsed = float(value)
        else:
            parsed = value
    except ValueError:
        raise UsageError(f"--set {key}={value}: expected a value of type {type(current).__name__}") from None
    setattr(section, option, parsed)


# option name on the command line -> (section, field)
_TRAIN_OPTIONS = {
    "dataset": ("train", "dataset"),
    "data_root": ("train", "data_root"),
    "steps": ("train", "steps"),
    "batch_size": ("train", "batch_size"),
    "image_size": ("model", "image_size"),
    "device": ("train", "device"),
    "seed": ("train", "seed"),
    "eval_every": ("train", "eval_every"),
    "max_eval_images": ("train", "max_eval_images"),
    "time_limit": ("train", "time_limit_minutes"),
    "max_iterations": ("train", "max_iterations"),
    "d_steps": ("train", "d_steps"),
    "num_workers": ("train", "num_workers"),
    "cache_images": ("train", "cache_images"),  # only --no-cache-images sets it (False)
    "auto_restart": ("train", "auto_restart"),
    "backup_dir": ("train", "backup_dir"),
    "backup_every": ("train", "backup_every"),
    "lambda_z": ("loss", "lambda_z"),
    "min_area": ("loss", "min_area"),
    "binarization": ("loss", "binarization"),
    "lr_mask": ("optim", "lr_mask"),
    "lr_gen": ("optim", "lr_gen"),
    "lr_disc": ("optim", "lr_disc"),
    "lr_info": ("optim", "lr_info"),
}
_TRAIN_FLAGS = {"amp": "amp", "compile": "compile"}
#: on/off options (``--x`` / ``--no-x``) whose default is the configuration's
_TRAIN_SWITCHES = {"channels_last": "channels_last"}


def _apply_overrides(config, args: argparse.Namespace) -> List[str]:
    """Apply the explicit options to ``config``; returns the ``section.option`` names set."""
    given: List[str] = []
    for name, (section, field) in _TRAIN_OPTIONS.items():
        value = getattr(args, name, None)
        if value is not None:
            setattr(getattr(config, section), field, value)
            given.append(f"{section}.{field}")
    for name, field in _TRAIN_FLAGS.items():
        if getattr(args, name, False):
            setattr(config.train, field, True)
            given.append(f"train.{field}")
    for name, field in _TRAIN_SWITCHES.items():
        value = getattr(args, name, None)
        if value is not None:
            setattr(config.train, field, value)
            given.append(f"train.{field}")
    for assignment in args.set or []:
        apply_set(config, assignment)
        given.append(assignment.split("=", 1)[0].strip())
    return given


# ----------------------------------------------------------------------------- data sets
def _data_module():
    try:
        import redo_lib.data as data
    except ImportError as error:  # pragma: no cover - the data layer ships with the package
        raise UsageError(f"the data layer (redo_lib.data) is not available: {error}") from error
    return data


def _data_root(name: str, root: Optional[str]) -> Optional[str]:
    if root:
        return root
    data = _data_module()
    info = getattr(data, "DATASETS", {}).get(name)
    if info is not None and not info.needs_root:
        return None
    try:
        from redo_lib.data.cli import default_root

        return str(default_root(name))
    except ImportError:  # pragma: no cover
        return str(Path("data") / name)


def load_split(name: str, root: Optional[str], split: str, image_size: int, n_regions: int):
    """One split through :func:`redo_lib.data.load_dataset` (root defaults to ``data/NAME``)."""
    data = _data_module()
    kwargs: Dict[str, Any] = {}
    if name == "folder" or name in getattr(data, "SYNTHETIC_NAMES", ("synthetic",)):
        kwargs["n_regions"] = n_regions
    return data.load_dataset(name, _data_root(name, root), split, image_size=image_size, **kwargs)


def _user_errors() -> tuple:
    errors: List[type] = [ValueError, FileNotFoundError, NotADirectoryError, PermissionError]
    try:
        from redo_lib.data.errors import DataError

        errors.append(DataError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


# ----------------------------------------------------------------------------- train
def _train_config(args: argparse.Namespace):
    """(config, out folder, the loaded resume checkpoint or None) for ``redo train``.

    With ``--resume`` the checkpoint (``OUT/last.pt``, else ``--backup-dir``'s) is read once
    here and handed to the trainer.
    """
    from .config import PRESETS, RENAMED_PRESETS, get_preset
    from .training.checkpoint import check_resumable, config_of, find_resume_checkpoint, read_resume_checkpoint

    if args.preset in RENAMED_PRESETS:
        new = RENAMED_PRESETS[args.preset]
        print(f"notice: preset {args.preset!r} is now called {new!r} (same settings); "
              f"use --preset {new}", file=sys.stderr)
        args.preset = new
    out = Path(args.out) if args.out else Path("runs") / (args.preset or "run")
    backup = args.backup_dir or ""
    stored = loaded = None
    if not args.resume and not args.print_config:
        found = find_resume_checkpoint(out, backup)
        if found is not None:
            option = "--backup-dir" if found[1] else "--out"
            raise UsageError(f"{found[0].parent} already holds a run (last.pt); pass --resume to continue it "
                             f"or choose another {option}")
    if args.resume:
        loaded = read_resume_checkpoint(out, backup)
        if loaded is not None:
            stored = config_of(loaded.state, loaded.path)
    if args.preset is None and stored is None:
        hint = f" (no checkpoint to resume in {out}{f' or {backup}' if backup else ''})" if args.resume else ""
        raise UsageError(f"--preset is required{hint}; valid presets: {', '.join(PRESETS)}")

    if stored is None:
        config = get_preset(args.preset)
        _apply_overrides(config, args)
        config.validate()
        return config, out, None
    last = loaded.path

    # Resuming: the stored configuration, with the explicit options on top.
    config = dataclasses.replace(stored, **{s: dataclasses.replace(getattr(stored, s))
                                            for s in ("model", "loss", "optim", "train")})
    _apply_overrides(config, args)
    config.validate()
    if args.preset is not None:
        # The networks, losses and optimisers of the named preset must be those stored.
        wanted = get_preset(args.preset)
        _apply_overrides(wanted, args)
        wanted.train = config.train
        check_resumable(stored, wanted, last)
    check_resumable(stored, config, last)
    return config, out, loaded


def cmd_train(args: argparse.Namespace) -> int:
    from .training.distributed import init_from_env, shutdown
    from .training.trainer import Trainer, check_train_config, resolve_device

    config, out, loaded = _train_config(args)
    check_train_config(config)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    device_type = resolve_device(config.train.device).type
    dist = init_from_env(device_type)
    try:
        t = config.train
        train_set = load_split(t.dataset, t.data_root or None, "train", config.model.image_size,
                               config.model.n_regions)
        try:
            val_set = load_split(t.dataset, t.data_root or None, "val", config.model.image_size,
                                 config.model.n_regions)
        except _user_errors() as error:
            if dist.is_main:
                print(f"note: no validation split ({error}); training without it", file=sys.stderr)
            val_set = None
        if val_set is not None and len(val_set) == 0:
            val_set = None
        if len(train_set) == 0:
            raise UsageError(f"the training split of {t.dataset!r} is empty")
        if dist.is_main:
            n_val = "no" if val_set is None else len(val_set)
            print(f"redo train: {t.dataset} ({len(train_set)} train / {n_val} val images, "
                  f"{config.model.image_size} px), {t.steps} steps of batch {t.batch_size}"
                  f"{f' x {dist.world_size} processes' if dist.enabled else ''}, out {out}",
                  file=sys.stderr)
        trainer = Trainer(config, out, train_set, val_set, resume=args.resume,
                          progress=not args.quiet, tensorboard=args.tensorboard, dist=dist, checkpoint=loaded)
        del loaded  # the trainer has copied it: free the memory (1.1 GB for Flowers) before training
        summary = trainer.fit()
    finally:
        shutdown(dist)
    if dist.is_main:
        best = summary["best_iou"]
        best_text = "no validation score" if best is None else f"best IoU {best:.4f} at step {summary['best_step']}"
        backup = f" (backup in {config.train.backup_dir})" if config.train.backup_dir else ""
        print(f"done: step {summary['step']}, {best_text}, {summary['restarts']} restart(s); "
              f"checkpoints in {out}{backup}")
    return 0


# ----------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .training.evaluation import evaluate_masks, has_masks
    from .training.trainer import resolve_device
    from .utils import amp_dtype

    device = resolve_device(args.device)
    if (args.checkpoint is None) == (args.baseline is None):
        raise UsageError("give exactly one of --checkpoint FILE or --baseline NAME")
    step = None
    if args.baseline is not None:
        from .baselines import BASELINES

        if args.baseline not in BASELINES:
            raise UsageError(f"unknown baseline {args.baseline!r}; valid baselines: {', '.join(BASELINES)}")
        if args.dataset is None:
            raise UsageError("--baseline needs --dataset (and --image-size, default 128; 32 for synthetic)")
        dataset_name = args.dataset
        image_size = args.image_size or (32 if dataset_name in _data_module().SYNTHETIC_NAMES else 128)
        root = args.data_root
        from .baselines import TimedBaseline

        # Baselines run on the CPU (numpy-based ones included), timed per image.
        timed = TimedBaseline(BASELINES[args.baseline])
        predict = lambda images: timed(images.cpu()).to(images.device)  # noqa: E731
        n_regions = 2
        source = {"baseline": args.baseline}
    else:
        from .training.checkpoint import load_checkpoint, load_model

        model, config = load_model(args.checkpoint, device)
        try:
            step = load_checkpoint(args.checkpoint).get("step")
        except ValueError:
            step = None  # official file converted on the fly
        dataset_name = args.dataset or config.train.dataset
        image_size = args.image_size or config.model.image_size
        root = args.data_root or (config.train.data_root if dataset_name == config.train.dataset else None) or None
        predict = model.mask_net
        n_regions = config.model.n_regions
        source = {"checkpoint": str(args.checkpoint), "step": step}
    dataset = load_split(dataset_name, root, args.split, image_size, n_regions)
    if len(dataset) == 0:
        raise UsageError(f"the {args.split} split of {dataset_name!r} is empty")
    if not has_masks(dataset):
        raise UsageError(f"the {args.split} split of {dataset_name!r} has no ground-truth masks to score "
                         f"against; choose another --split")
    if args.baseline is not None:
        from tqdm.auto import tqdm

        n_images = min(len(dataset), args.max_images) if args.max_images else len(dataset)
        timed.progress = tqdm(total=n_images, desc=args.baseline, unit="image", leave=False)
    amp = amp_dtype(device) if args.amp else None  # the training rule; None (float32) off CUDA
    scores = evaluate_masks(predict, dataset, n_regions, batch_size=args.batch_size,
                            max_images=args.max_images, device=device, num_workers=args.num_workers,
                            autocast_dtype=amp)
    result = {**source, "dataset": dataset_name, "split": args.split, "image_size": image_size, **scores}
    if args.baseline is not None:
        timed.progress.close()
        result.update(timed.per_image())
    if args.json:
        print(json.dumps(result))
    else:
        what = f"baseline {args.baseline}" if args.baseline else f"{args.checkpoint}" + (
            f" (step {step})" if step is not None else "")
        print(f"{what} on {dataset_name} {args.split} ({scores['n_images']} images, {image_size} px)")
        print(f"  per-image polarity (official): accuracy {scores['accuracy']:.4f}  IoU {scores['iou']:.4f}")
        print(f"  data-set polarity (strict):    accuracy {scores['accuracy_dataset']:.4f}  "
              f"IoU {scores['iou_dataset']:.4f}")
        print(f"  smaller region covers {scores['min_region_size']:.3f} of the pixels")
        if args.baseline is not None:
            print(f"  time: {1000 * result['seconds_per_image']:.2f} ms per image on the CPU "
                  f"({1000 * result['cpu_seconds_per_image']:.2f} ms CPU time, {result['threads']} thread(s))")
    return 0


# ----------------------------------------------------------------------------- redraw
def cmd_redraw(args: argparse.Namespace) -> int:
    from .training.checkpoint import load_model
    from .training.data import iterate_batches
    from .training.evaluation import has_masks
    from .training.trainer import resolve_device

    if args.n_images < 1 or args.n_z < 1:
        raise UsageError("--n-images and --n-z must be at least 1")
    device = resolve_device(args.device)
    model, config = load_model(args.checkpoint, device)
    dataset_name = args.dataset or config.train.dataset
    root = args.data_root or (config.train.data_root if dataset_name == config.train.dataset else None) or None
    dataset = load_split(dataset_name, root, args.split, config.model.image_size, config.model.n_regions)
    if len(dataset) == 0:
        raise UsageError(f"the {args.split} split of {dataset_name!r} is empty")
    n = min(args.n_images, len(dataset))
    batch = next(iterate_batches(dataset, n, max_items=n))
    images = batch["image"].to(device)
    truth = batch["mask"].to(device) if has_masks(dataset) and "mask" in batch else None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        from .viz import redraw_figure
    except ImportError:
        redraw_figure = None
    if redraw_figure is None:  # pragma: no cover - viz ships with the package
        from .training.samples import basic_sample_grid, fixed_codes, save_grid

        save_grid(basic_sample_grid(model, images, truth, fixed_codes(args.n_z, model.nz, args.seed)), output)
    else:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        figure = redraw_figure(model, images, truth=truth, n_z=args.n_z, seed=args.seed)
        figure.savefig(output, dpi=args.dpi, bbox_inches="tight")
        plt.close(figure)
    print(f"wrote {output}")
    return 0


# ----------------------------------------------------------------------------- convert
def cmd_convert_official(args: argparse.Namespace) -> int:
    from .training.convert import convert_official

    if not Path(args.input).is_file():
        raise UsageError(f"official checkpoint not found: {args.input}")
    state = convert_official(args.input, args.output)
    cfg = state["config"]
    print(f"wrote {args.output}: networks {', '.join(state.get('official_networks', []))}; "
          f"{cfg['model']['image_size']} px, K={cfg['model']['n_regions']}, nf_gen={cfg['model']['nf_gen']}, "
          f"data set {cfg['train']['dataset']}")
    return 0


# ----------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from .training.checkpoint import export_model

    if not Path(args.input).is_file():
        raise UsageError(f"checkpoint not found: {args.input}")
    state = export_model(args.input, args.output)
    size = Path(args.output).stat().st_size / 2**20
    print(f"wrote {args.output} ({size:.1f} MB): the networks of step {state.get('step')}, "
          f"no optimiser state (it scores and redraws, it cannot be resumed)")
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .config import PRESETS, RENAMED_PRESETS

    parser = _Parser(prog="redo", description="ReDO: unsupervised object segmentation by redrawing "
                     "(Chen et al., NeurIPS 2019).")
    parser.add_argument("--version", action="version", version=f"redo_lib {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    # train
    train = commands.add_parser("train", help="train a model (or --resume a run)",
                                description="Train ReDO. A preset sets the networks, the training "
                                "hyper-parameters and a default data set; options override it.")
    train.add_argument("--preset", choices=[*PRESETS, *RENAMED_PRESETS], metavar="NAME",
                       help=f"one of: {', '.join(PRESETS)} (required unless resuming)")
    train.add_argument("--dataset", metavar="NAME", help="data set (default: the preset's)")
    train.add_argument("--data-root", metavar="DIR", help="data set folder (default: data/NAME)")
    train.add_argument("--out", metavar="DIR", help="run folder (default: runs/PRESET)")
    train.add_argument("--steps", type=int, metavar="N",
                       help="iterations of the run (with --resume: up to step N); after an automatic "
                       "restart the new attempt runs N iterations from 0 (see --max-iterations)")
    train.add_argument("--max-iterations", type=int, metavar="N",
                       help="stop after N iterations in all, counting those before automatic restarts "
                       "(default: no cap)")
    train.add_argument("--batch-size", type=int, metavar="B",
                       help="batch size (per process; default: the preset's, 20 for the image presets, "
                       "the official code's default; the paper quotes 25)")
    train.add_argument("--image-size", type=int, metavar="S", help="32, 64 or 128")
    train.add_argument("--device", metavar="D", help="auto (default), cpu, cuda or cuda:N")
    train.add_argument("--seed", type=int, metavar="S")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out up to --steps (from --out/last.pt, or from "
                       "--backup-dir/last.pt when --out has none: a new Colab session)")
    train.add_argument("--backup-dir", metavar="DIR",
                       help="a second folder (e.g. on Google Drive) that receives best.pt (networks only) and "
                       "metrics.jsonl at every evaluation and a copy of last.pt every --backup-every "
                       "evaluations and when the run stops; --out stays the working folder (local disk)")
    train.add_argument("--backup-every", type=int, metavar="N",
                       help="copy last.pt to --backup-dir every N evaluations (default 4)")
    train.add_argument("--eval-every", type=int, metavar="N", help="evaluate and checkpoint every N steps")
    train.add_argument("--time-limit", type=float, metavar="MIN", help="stop after MIN minutes of training (evaluations included)")
    train.add_argument("--max-eval-images", type=int, metavar="N", help="score only the first N validation images")
    train.add_argument("--d-steps", type=int, metavar="N", help="D updates per generator update")
    train.add_argument("--auto-restart", type=float, metavar="X",
                       help="restart when the smaller region is below X (0: off)")
    train.add_argument("--lambda-z", type=float, metavar="W", help="weight of the information loss")
    train.add_argument("--min-area", type=float, metavar="A",
                       help="an addition, not ReDO: PerturbGAN's hinge that keeps every region's soft mask "
                       "above a share A of its image (weight: --set loss.min_area_weight=W, default 10; "
                       "0: off, the default); a region kept as a haze below 0.5 escapes it: see --binarization")
    train.add_argument("--binarization", type=float, metavar="W",
                       help="an addition, not ReDO: PerturbGAN's term W * mean(min(M, 1 - M)) that pushes the "
                       "masks towards 0 or 1 (PerturbGAN: 2; 0: off, the default)")
    train.add_argument("--num-workers", type=int, metavar="N", help="data-loading processes")
    train.add_argument("--no-cache-images", dest="cache_images", action="store_false", default=None,
                       help="decode every batch instead of keeping the decoded images in memory")
    for name, what in (("mask", "F"), ("gen", "the generators"), ("disc", "D"), ("info", "delta")):
        train.add_argument(f"--lr-{name}", type=float, metavar="LR", help=f"learning rate of {what}")
    train.add_argument("--amp", action="store_true",
                       help="mixed precision on CUDA: bf16 on compute capability >= 8.0, else fp16 + gradient scaler")
    train.add_argument("--compile", action="store_true", help="torch.compile the networks")
    train.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="channels-last memory format (default: on; --no-channels-last: the contiguous "
                       "layout, other float rounding)")
    train.add_argument("--set", action="append", metavar="SECTION.OPTION=VALUE",
                       help="any configuration option, e.g. --set loss.regions=one (repeatable)")
    train.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--print-config", action="store_true", help="print the configuration as JSON and exit")
    train.set_defaults(func=cmd_train)

    # evaluate
    evaluate = commands.add_parser("evaluate", help="score a checkpoint or a baseline on a split",
                                   description="Accuracy and IoU under both protocols: per-image polarity "
                                   "(official) and one polarity for the whole data set.")
    evaluate.add_argument("--checkpoint", metavar="FILE", help="a redo_lib (or official) checkpoint")
    evaluate.add_argument("--baseline", metavar="NAME",
                          help="all-foreground, centred-disk, kmeans, grabcut or iem instead of a checkpoint")
    evaluate.add_argument("--dataset", metavar="NAME", help="default: the checkpoint's")
    evaluate.add_argument("--data-root", metavar="DIR")
    evaluate.add_argument("--split", default="test", help="train, val or test (default test)")
    evaluate.add_argument("--image-size", type=int, metavar="S", help="default: the checkpoint's")
    evaluate.add_argument("--batch-size", type=int, default=50, metavar="B")
    evaluate.add_argument("--max-images", type=int, default=0, metavar="N", help="only the first N images")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--num-workers", type=int, default=0, metavar="N")
    evaluate.add_argument("--amp", action="store_true",
                          help="autocast on CUDA (bf16 on capability >= 8.0, else fp16): faster, but masks near "
                          "0.5 may flip; training's own evaluations, best.pt and metrics.jsonl are float32")
    evaluate.add_argument("--json", action="store_true", help="one JSON object on stdout")
    evaluate.set_defaults(func=cmd_evaluate)

    # redraw
    redraw = commands.add_parser("redraw", help="figure of redrawn objects and backgrounds",
                                 description="Images, truth, masks and each region redrawn with fixed codes "
                                 "(the reproducibility report's Figure 2).")
    redraw.add_argument("--checkpoint", required=True, metavar="FILE")
    redraw.add_argument("--dataset", metavar="NAME", help="default: the checkpoint's")
    redraw.add_argument("--data-root", metavar="DIR")
    redraw.add_argument("--split", default="test")
    redraw.add_argument("--n-images", type=int, default=4, metavar="N")
    redraw.add_argument("--n-z", type=int, default=4, metavar="N", help="codes per region")
    redraw.add_argument("--seed", type=int, default=0, help="seed of the fixed codes")
    redraw.add_argument("--device", default="auto")
    redraw.add_argument("--dpi", type=float, default=100.0)
    redraw.add_argument("--output", required=True, metavar="FILE.png")
    redraw.set_defaults(func=cmd_redraw)

    # convert-official
    convert = commands.add_parser("convert-official", help="official ReDO weights -> a redo_lib checkpoint")
    convert.add_argument("input", metavar="INPUT.pth")
    convert.add_argument("output", metavar="OUTPUT.pt")
    convert.set_defaults(func=cmd_convert_official)

    # export
    export = commands.add_parser("export", help="a checkpoint's networks only (small, for sharing)")
    export.add_argument("input", metavar="CHECKPOINT.pt")
    export.add_argument("output", metavar="OUTPUT.pt")
    export.set_defaults(func=cmd_export)

    # data (the data layer's own sub-commands)
    try:
        from .data.cli import add_data_parser
    except ImportError:  # pragma: no cover
        pass
    else:
        add_data_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``redo`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    debug = os.environ.get("REDO_DEBUG", "") not in ("", "0")
    from .training.checkpoint import CheckpointSaveError
    from .training.trainer import TrainingDiverged

    try:
        return int(args.func(args) or 0)
    except SystemExit:
        raise
    except CheckpointSaveError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_SAVE_FAILED
    except TrainingDiverged as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except _user_errors() as error:
        if debug:
            raise
        message = str(error).strip().replace("\n", " ") or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept (redo train --resume continues it)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
