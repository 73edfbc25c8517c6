"""Official ReDO checkpoints (``mickaelChen/ReDO``) -> redo_lib checkpoints.

The weights are mapped by :func:`redo_lib.pretrained.load_official`; the configuration
is the preset whose networks match the official options (Flowers, LFW, ...), with the
official run's own losses, learning rates and batch size where its options record them.
The result has no optimiser state: it is for evaluation and figures, not for resuming.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import torch

from ..config import PRESETS, ReDOConfig
from .checkpoint import FORMAT, NETWORKS, VERSION, CheckpointError, atomic_save, model_state

__all__ = ["official_to_checkpoint", "convert_official"]

# official option -> (section, field)
_OPTIONS = {
    "wrecZ": ("loss", "lambda_z"),
    "lrM": ("optim", "lr_mask"),
    "lrG": ("optim", "lr_gen"),
    "lrD": ("optim", "lr_disc"),
    "lrZ": ("optim", "lr_info"),
    "wdecay": ("optim", "weight_decay_mask"),
    "batchSize": ("train", "batch_size"),
    "checkpointFreq": ("train", "eval_every"),
    "autoRestart": ("train", "auto_restart"),
    "nIteration": ("train", "steps"),
    "manualSeed": ("train", "seed"),
}


def _options(raw: Mapping[str, Any]) -> Dict[str, Any]:
    options = raw.get("options")
    if isinstance(options, argparse.Namespace):
        return dict(vars(options))
    return dict(options or {})


def official_to_checkpoint(path_or_dict: Union[str, "os.PathLike[str]", Mapping[str, Any]]) -> Dict[str, Any]:
    """A redo_lib checkpoint dict (weights and configuration) from an official file."""
    try:
        from ..pretrained import load_official, read_official
    except ImportError as error:  # pragma: no cover - pretrained.py ships with the package
        raise CheckpointError(f"converting official checkpoints needs redo_lib.pretrained: {error}") from error
    try:
        raw = read_official(path_or_dict)
        model = load_official(raw)
    except FileNotFoundError as error:
        raise CheckpointError(str(error)) from error
    except (ValueError, RuntimeError, KeyError) as error:  # OfficialCheckpointError and mapping errors
        raise CheckpointError(f"cannot convert the official checkpoint: {error}") from error
    options = _options(raw)

    config = ReDOConfig(model=model.config)
    for name, factory in PRESETS.items():
        preset = factory()
        if dataclasses.asdict(preset.model) == dataclasses.asdict(model.config):
            config = dataclasses.replace(preset, model=model.config)
            break
    dataset = options.get("dataset")
    if isinstance(dataset, str) and dataset in PRESETS:
        config.train.dataset = dataset
    for key, (section, field) in _OPTIONS.items():
        value = options.get(key)
        if value is None:
            continue
        target = getattr(config, section)
        kind = type(getattr(target, field))
        try:
            setattr(target, field, kind(value))
        except (TypeError, ValueError):
            pass
    config.validate()
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "model": model_state(model),
        "step": int(options.get("iteration", 0) or 0),
        "best_iou": float(options["bestValIoU"]) if options.get("bestValIoU") else None,
        "source": "official",
        "official_networks": list(getattr(model, "official_networks", [])),
        "networks": list(NETWORKS),
        "torch_version": str(torch.__version__),
    }


def convert_official(src: Union[str, "os.PathLike[str]"], dst: Union[str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """Convert the official file ``src`` and write it atomically to ``dst``."""
    state = official_to_checkpoint(src)
    atomic_save(state, Path(dst))
    return state
