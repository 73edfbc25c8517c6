"""Checkpoints: atomic writes, every random state, safe loading.

A checkpoint is a plain dict that :func:`torch.load` reads with ``weights_only=True``
(no pickled classes): the configuration as nested plain data
(:meth:`~redo_lib.ReDOConfig.to_dict`), the state dicts of the four networks and of their
optimisers, the step, the best validation IoU, the restart count and every random state
(torch CPU and CUDA, numpy, Python's ``random``, the trainer's own generator and the data
order). Files are written atomically: to a temporary file in the same folder, flushed and
fsync'ed, then renamed over the target with :func:`os.replace`, so a kill during a save
leaves the previous checkpoint intact. A save needs at most one file's worth of free space
beyond the file it replaces (one temporary file at a time); temporaries a killed save left
behind (``.NAME.partial-XXXXXXXX.tmp``) are removed by :func:`remove_stale_temporaries`.

Two kinds of file (the paper's networks: Chen et al., NeurIPS 2019, Sec. 3):

* ``last.pt``, the resume state (:meth:`~redo_lib.training.trainer.Trainer.state_dict`):
  networks, both Adam moments of every parameter, random states, data order. A Flowers
  ``last.pt`` is about 1.1 GB (:func:`checkpoint_sizes` measures any preset).
* ``best.pt`` and ``redo export`` files, the networks only (:func:`exported_state`): about
  a third of that; :func:`load_model`, ``redo evaluate`` and the explorer read both kinds.

A write that fails (``ENOSPC``, ``EDQUOT``, ``EIO``, any :class:`OSError`) raises
:class:`CheckpointSaveError`: one message naming the file, the space it needed, the free
space there and what to do; the previous file stays intact.
"""
from __future__ import annotations

import argparse
import errno as errno_codes
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import torch

from ..config import ReDOConfig
from ..model import ReDO

__all__ = [
    "FORMAT",
    "NETWORKS",
    "CheckpointError",
    "CheckpointSaveError",
    "LoadedCheckpoint",
    "read_resume_checkpoint",
    "atomic_save",
    "atomic_copy",
    "state_nbytes",
    "format_bytes",
    "remove_stale_temporaries",
    "find_resume_checkpoint",
    "exported_state",
    "checkpoint_sizes",
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
        "auto_restart", "auto_restart_until", "time_limit_minutes", "max_iterations", "backup_dir",
        "backup_every", "tf32", "cache_images",
    )
)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of another format or of another configuration."""


class CheckpointSaveError(OSError):
    """Writing a checkpoint (or a copy of one) failed: full disk or Drive, quota, I/O error.

    ``str(error)`` is one line naming the file, the space it needed, the free space there
    and what to do; ``errno`` is the original error's (``errno.ENOSPC``, ...), ``path`` the
    target, ``needed`` and ``free`` are bytes (``free`` is None when it cannot be read).
    The previous file at ``path`` is left as it was.
    """

    def __init__(self, path: Path, needed: Optional[int], free: Optional[int], cause: BaseException) -> None:
        code = getattr(cause, "errno", None)
        reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        super().__init__(code, reason)
        self.path, self.needed, self.free, self.cause = Path(path), needed, free, cause
        name = errno_codes.errorcode.get(code, "") if code is not None else ""
        need = "" if needed is None else f"; it needs about {format_bytes(needed)}"
        room = "" if free is None else f" and {self.path.parent} has {format_bytes(free)} free"
        kept = (f"the previous {self.path.name} is intact" if self.path.exists()
                else f"no earlier {self.path.name} was there")
        self.message = (
            f"could not write {self.path}: {reason}{f' ({name})' if name else ''}{need}{room}; "
            f"{kept}. Free space there (on Google Drive also empty the bin: replaced files stay "
            f"in it and count against the quota until it is emptied), then rerun with --resume"
        )

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable (DDP error reporting, multiprocessing)
        return (_rebuild_save_error, (str(self.path), self.needed, self.free, self.errno, self.strerror))


def _rebuild_save_error(path, needed, free, code, strerror) -> "CheckpointSaveError":
    return CheckpointSaveError(Path(path), needed, free, OSError(code, strerror))


def format_bytes(n: float) -> str:
    """``1.1 GB``, ``372.0 MB``, ``12 kB`` (powers of 1000, as disks and Google Drive count)."""
    n = float(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def state_nbytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) checkpoint dict: about the size of its file."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_nbytes(v) for v in obj)
    return 0


def _free_bytes(folder: Path) -> Optional[int]:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


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


#: temporary files of :func:`_atomic_write`: ``.NAME.partial-XXXXXXXX.tmp`` next to ``NAME``
TMP_MARK = ".partial-"
TMP_SUFFIX = ".tmp"


class _RecordingWriter:
    """A file handle that remembers the OSError of a failed write.

    ``torch.save`` turns a failed write of its zip container into a ``RuntimeError``
    ("unexpected pos ..."); the recorded OSError says what really happened (ENOSPC).
    """

    def __init__(self, handle) -> None:
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def _atomic_write(path: PathLike, write, needed: Optional[int] = None) -> None:
    """Write ``path`` through ``write(handle)``: temporary file, fsync, :func:`os.replace`.

    One temporary file at a time, removed on any failure; an OSError (also one that
    ``torch.save`` reports as a RuntimeError) becomes :class:`CheckpointSaveError`.
    """
    path = Path(path)
    tmp: Optional[str] = None
    writer: Optional[_RecordingWriter] = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", suffix=TMP_SUFFIX, dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            writer = _RecordingWriter(handle)
            write(writer)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except BaseException as error:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        cause = writer.error if writer is not None and writer.error is not None else error
        if isinstance(cause, OSError) and not isinstance(cause, CheckpointSaveError):
            raise CheckpointSaveError(path, needed, _free_bytes(path.parent), cause) from error
        raise
    _fsync_dir(path.parent)


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``.

    Raises :class:`CheckpointSaveError` when the write fails (the old file is kept).
    """
    _atomic_write(path, lambda handle: torch.save(obj, handle), needed=state_nbytes(obj))


def atomic_copy(src: PathLike, dst: PathLike) -> None:
    """Copy a file so that ``dst`` is always either the old or the complete new file."""
    with open(src, "rb") as source:
        _atomic_write(dst, lambda handle: shutil.copyfileobj(source, handle, 1 << 20),
                      needed=os.fstat(source.fileno()).st_size)


def remove_stale_temporaries(folder: PathLike) -> List[Path]:
    """Delete the temporary files a killed save left in ``folder``; returns them.

    Only this module's pattern (``.NAME.partial-XXXXXXXX.tmp``) is touched; call it when no
    other process is saving into ``folder`` (the trainer does, at start-up).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.glob(f".*{TMP_MARK}*{TMP_SUFFIX}")):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


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


def exported_state(state: Dict[str, Any]) -> Dict[str, Any]:
    """The networks-only part of a training state (the ``best.pt`` / ``redo export`` format).

    Shares the network tensors with ``state`` (no copy); :func:`load_model` reads the result.
    """
    return {key: state[key] for key in EXPORTED_KEYS if key in state}


def export_model(src: PathLike, dst: PathLike) -> Dict[str, Any]:
    """Write the networks of checkpoint ``src`` to ``dst`` without optimiser and random states.

    The result loads with :func:`load_model` (and ``redo evaluate``) like the original,
    at about a third of its size, but cannot be resumed. Written atomically.
    """
    state = load_checkpoint(src)
    slim = exported_state(state)
    slim["exported_from"] = Path(src).name
    atomic_save(slim, dst)
    return slim


@dataclass
class LoadedCheckpoint:
    """A resume checkpoint read once (``redo train --resume`` hands it to the trainer)."""

    path: Path
    state: Dict[str, Any]
    from_backup: bool = False


def find_resume_checkpoint(out: PathLike, backup_dir: PathLike = "") -> Optional[Tuple[Path, bool]]:
    """``(path, from_backup)`` of the ``last.pt`` to resume the run in ``out`` from, or None.

    ``out/last.pt`` when it exists (the run folder is written at every evaluation, so it is
    the newest), else ``backup_dir/last.pt`` (a new Colab session: the local disk is empty,
    the copy on Google Drive is not).
    """
    last = Path(out) / "last.pt"
    if last.is_file():
        return last, False
    if backup_dir:
        backup = Path(backup_dir) / "last.pt"
        if backup.is_file():
            return backup, True
    return None


def read_resume_checkpoint(out: PathLike, backup_dir: PathLike = "") -> Optional[LoadedCheckpoint]:
    """:func:`find_resume_checkpoint`, read with :func:`load_checkpoint` (once)."""
    found = find_resume_checkpoint(out, backup_dir)
    if found is None:
        return None
    path, from_backup = found
    return LoadedCheckpoint(path, load_checkpoint(path), from_backup)


def checkpoint_sizes(config: ReDOConfig, folder: Optional[PathLike] = None) -> Dict[str, int]:
    """``{"last": bytes, "best": bytes}``: the real file sizes of a run of ``config``.

    Builds the trainer's networks and Adam optimisers on the CPU (both moments of every
    parameter filled, as after the first iteration), writes ``last.pt`` and ``best.pt``
    exactly as training does into a temporary folder (or ``folder``) and measures them.
    Needs about three times the size of ``last.pt`` in memory and its size on disk.
    """
    from .benchmark import RandomImages  # lazy: benchmark imports the trainer, which imports us
    from .trainer import Trainer

    config = ReDOConfig.from_dict(config.to_dict())
    config.train.device, config.train.compile, config.train.amp = "cpu", False, False
    config.train.backup_dir = ""
    n = config.train.batch_size * (1 + config.train.d_steps)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        trainer = Trainer(config, Path(tmp) / "run", RandomImages(n, config.model.image_size), None,
                          progress=False, write_files=False, log=lambda message: None)
        for optimizer in trainer.optimizers.values():  # Adam's moments exist after its first step
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = torch.zeros_like(p)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        state = trainer.state_dict()
        sizes = {}
        for name, obj in (("last", state), ("best", exported_state(state))):
            path = Path(tmp) / f"{name}.pt"
            atomic_save(obj, path)
            sizes[name] = path.stat().st_size
            path.unlink()
    return sizes


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
