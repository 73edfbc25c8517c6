"""Checkpoints: atomic writes, every random state, safe loading.

A checkpoint is a plain dict that :func:`torch.load` reads with ``weights_only=True``
(no pickled classes): the configuration as nested plain data
(:meth:`~redo_lib.ReDOConfig.to_dict`), the state dicts of the four networks and of their
optimisers, the step, the best validation IoU, the restart count and every random state
(torch CPU and CUDA, numpy, Python's ``random``, the trainer's own generator and the data
order). Files are written atomically: to a temporary file in the same folder, flushed and
fsync'ed, then renamed over the target with :func:`os.replace`, so a kill during a save
leaves the previous checkpoint intact.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import numpy as np
import torch

from ..config import ReDOConfig
from ..model import ReDO

__all__ = [
    "FORMAT",
    "NETWORKS",
    "CheckpointError",
    "atomic_save",
    "atomic_copy",
    "capture_rng_state",
    "restore_rng_state",
    "load_checkpoint",
    "load_model",
    "model_state",
    "RESUMABLE_OPTIONS",
    "check_resumable",
    "export_model",
]

PathLike = Union[str, "os.PathLike[str]"]

FORMAT = "redo_lib.checkpoint"
VERSION = 1
NETWORKS = ("mask_net", "generator", "discriminator", "info_net")

#: options that may change when a run is resumed (length, evaluation, logging, hardware,
#: data location, collapse handling): everything that does not change what one step computes
RESUMABLE_OPTIONS = frozenset(
    f"train.{name}" for name in (
        "steps", "eval_every", "max_eval_images", "num_workers", "data_root", "eval_batch_size",
        "log_every", "device", "amp", "channels_last", "compile", "compile_backend", "train_eval_images",
        "auto_restart", "auto_restart_until", "time_limit_minutes",
    )
)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of another format or of another configuration."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: PathLike, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``."""
    _atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_copy(src: PathLike, dst: PathLike) -> None:
    """Copy a file so that ``dst`` is always either the old or the complete new file."""
    with open(src, "rb") as source:
        _atomic_write(dst, lambda handle: shutil.copyfileobj(source, handle, 1 << 20))


# ----------------------------------------------------------------------------- RNG states
def capture_rng_state(generators: Optional[Dict[str, torch.Generator]] = None) -> Dict[str, Any]:
    """Every global random state, as tensors and plain data (``weights_only``-safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def restore_rng_state(state: Dict[str, Any], generators: Optional[Dict[str, torch.Generator]] = None) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss_next"]))
    for key, g in (generators or {}).items():
        if key in state.get("generators", {}):
            g.set_state(state["generators"][key])


# ----------------------------------------------------------------------------- loading
def model_state(model: ReDO) -> Dict[str, Dict[str, torch.Tensor]]:
    """The four networks' state dicts (on the CPU), keyed by network name."""
    return {name: {k: v.detach().cpu().clone() for k, v in getattr(model, name).state_dict().items()}
            for name in NETWORKS}


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read one of our checkpoints with ``weights_only=True``; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        # argparse.Namespace: the options of official checkpoints (recognised, then refused)
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated file, pickle with classes, not a torch file
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = next((line for line in lines if "Unpickler error" in line), lines[0] if lines else type(error).__name__)
        raise CheckpointError(f"cannot read checkpoint {path}: {detail}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        if isinstance(state, dict) and "netEncM" in state:
            raise CheckpointError(
                f"{path} is an official ReDO checkpoint: convert it first with "
                f"'redo convert-official {path} OUTPUT.pt'"
            )
        raise CheckpointError(f"{path} is not a redo_lib checkpoint (no '{FORMAT}' format tag)")
    if int(state.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path} was written by a newer redo_lib (format version {state['version']})")
    return state


def config_of(state: Dict[str, Any], path: PathLike = "checkpoint") -> ReDOConfig:
    try:
        return ReDOConfig.from_dict(state["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid configuration in checkpoint: {error}") from error


def load_model(path: PathLike, device: Any = "cpu") -> Tuple[ReDO, ReDOConfig]:
    """``(model, config)`` from a checkpoint file, the model in eval mode on ``device``.

    Reads our checkpoints (``weights_only=True``). Official ``.pth`` files are converted
    on the fly when :mod:`redo_lib.pretrained` is available.
    """
    path = Path(path)
    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        if "official ReDO checkpoint" not in str(error):
            raise
        from .convert import official_to_checkpoint  # lazy: needs redo_lib.pretrained

        state = official_to_checkpoint(path)
    config = config_of(state, path)
    model = ReDO(config.model)
    try:
        for name in NETWORKS:
            getattr(model, name).load_state_dict(state["model"][name])
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"{path}: the weights do not match the stored configuration: {error}") from error
    return model.to(device).eval(), config


#: what :func:`export_model` keeps of a training checkpoint: enough to load, score and cite it
EXPORTED_KEYS = ("format", "version", "config", "model", "step", "iterations", "restarts", "best_iou",
                 "best_step", "elapsed_seconds", "images_seen", "torch_version")


def export_model(src: PathLike, dst: PathLike) -> Dict[str, Any]:
    """Write the networks of checkpoint ``src`` to ``dst`` without optimiser and random states.

    The result loads with :func:`load_model` (and ``redo evaluate``) like the original,
    at about a third of its size, but cannot be resumed. Written atomically.
    """
    state = load_checkpoint(src)
    slim = {key: state[key] for key in EXPORTED_KEYS if key in state}
    slim["exported_from"] = Path(src).name
    atomic_save(slim, dst)
    return slim


def check_resumable(stored: ReDOConfig, requested: ReDOConfig, path: PathLike = "checkpoint",
                    allowed: Iterable[str] = RESUMABLE_OPTIONS) -> None:
    """Raise :class:`CheckpointError` naming every option that differs and may not change."""
    allowed = set(allowed)
    diff = {k: v for k, v in stored.diff(requested).items() if k not in allowed}
    if diff:
        details = "; ".join(f"{k}: checkpoint {a!r}, requested {b!r}" for k, (a, b) in sorted(diff.items()))
        raise CheckpointError(
            f"{path} was trained with another configuration ({details}); resume with the same "
            f"options or choose another --out"
        )
