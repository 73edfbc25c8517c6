"""Small helpers the notebooks and the command line share: seeding, device and precision choice."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import NamedTuple, Optional, Union

import numpy as np
import torch

__all__ = [
    "seed_everything",
    "pick_device",
    "full_size_requested",
    "AmpChoice",
    "amp_choice",
    "amp_dtype",
    "shipped_checkpoint",
    "shipped_manifest",
    "checkpoint_cache_dir",
    "RAW_BASE_URL",
]


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str = "auto", local_rank: "int | None" = None) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device; ``auto`` is CUDA when available.

    ``local_rank`` (under DDP) selects the process's own GPU. Asking for CUDA where there
    is none, or for a GPU that is not visible, fails with a message that says what to do.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu")
        if local_rank is not None:
            return torch.device("cuda", local_rank)
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"invalid device {name!r}; valid: auto, cpu, cuda, cuda:N") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} GPU(s) visible")
        return device
    raise ValueError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")


class AmpChoice(NamedTuple):
    """Mixed-precision setting for one device: the autocast dtype (None: float32) and the scaler."""

    dtype: Optional[torch.dtype]
    use_scaler: bool


def amp_choice(device: Union[torch.device, str]) -> AmpChoice:
    """The project's one mixed-precision rule (training and ``redo evaluate --amp``).

    - CUDA, compute capability >= 8.0 (Ampere and later): bfloat16, no gradient scaler.
    - CUDA, older cards (a T4 is 7.5): float16 with a gradient scaler. bfloat16 is not
      chosen there although ``torch.cuda.is_bf16_supported()`` says yes: it is emulated
      and slow.
    - Any other device (the CPU): no autocast, float32.

    The capability is read for ``device`` itself (``cuda:N`` asks GPU N).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return AmpChoice(None, False)
    major, _minor = torch.cuda.get_device_capability(device)
    if major >= 8:
        return AmpChoice(torch.bfloat16, False)
    return AmpChoice(torch.float16, True)


def amp_dtype(device: Union[torch.device, str]) -> Optional[torch.dtype]:
    """The autocast dtype of :func:`amp_choice` for ``device``; None means float32 (no autocast)."""
    return amp_choice(device).dtype


def full_size_requested() -> bool:
    """True when ``REDO_FULL=1``: notebooks switch from small CPU defaults to GPU settings."""
    return os.environ.get("REDO_FULL", "0").strip().lower() in ("1", "true", "yes")


#: Where :func:`shipped_checkpoint` downloads the shipped checkpoints from when the
#: repository is not there (a pip install): the raw files of ``data/checkpoints/`` of the
#: book's repository (``repository:`` in ``_config.yml``). The environment variable
#: ``REDO_CHECKPOINT_URL`` replaces it (a fork, a mirror, a local folder served over HTTP).
RAW_BASE_URL = "https://github.com/redo-book/redo-book/raw/main/data/checkpoints"
#: The manifest (size and SHA-256 of every shipped file) packaged inside redo_lib; written
#: by ``python tools/write_manifest.py``.
MANIFEST_RESOURCE = "shipped_manifest.json"


def _search_starts() -> "list[Path]":
    """Folders above which ``data/checkpoints/`` is looked for: the current folder
    (notebooks run in ``book/``) and the package (an editable install)."""
    return [Path.cwd(), Path(__file__).resolve().parent]


def _local_checkpoint(name: str) -> "Optional[Path]":
    relative = Path("data") / "checkpoints" / f"{name}.pt"
    for start in _search_starts():
        for folder in (start, *start.parents):
            candidate = folder / relative
            if candidate.is_file():
                return candidate
    return None


def shipped_manifest() -> dict:
    """``{file name: {"size": bytes, "sha256": hex}}`` of the shipped checkpoint files, read
    from the manifest packaged inside redo_lib (empty when it is missing)."""
    import json
    from importlib import resources

    resource = resources.files(__package__).joinpath(MANIFEST_RESOURCE)
    if not resource.is_file():
        return {}
    return dict(json.loads(resource.read_text(encoding="utf-8")).get("files", {}))


def checkpoint_cache_dir() -> Path:
    """Where downloaded checkpoints are kept: ``$XDG_CACHE_HOME/redo_lib/checkpoints``, by
    default ``~/.cache/redo_lib/checkpoints``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "redo_lib" / "checkpoints"


def _sha256(path: Path) -> str:
    from .data.download import file_digest

    return file_digest(path, "sha256")


def _download_shipped(file_name: str, entry: dict, progress: bool) -> Path:
    """``file_name`` in the cache, downloaded and checked against its manifest ``entry``."""
    from .data.download import fetch
    from .data.errors import ChecksumError, DownloadError

    cache = checkpoint_cache_dir()
    target = cache / file_name
    if target.is_file():
        if target.stat().st_size == entry["size"] and _sha256(target) == entry["sha256"]:
            return target
        target.unlink()  # damaged or from another release: fetch it again
    base = os.environ.get("REDO_CHECKPOINT_URL", "").strip() or RAW_BASE_URL
    url = f"{base.rstrip('/')}/{file_name}"
    unverified = cache / f"{file_name}.unverified"
    fix = (f"set REDO_CHECKPOINT_URL to a location holding the {file_name} of this redo_lib "
           f"version ({__package__} {_version()}), install the version matching the files at {base}, "
           "or clone the repository and run from it")
    try:
        fetch(url, unverified, progress=progress)
    except DownloadError as error:
        raise DownloadError(f"{error}. Offline, clone the repository (it holds data/checkpoints/) "
                            "or set REDO_CHECKPOINT_URL to a server that has the file") from None
    size, actual = unverified.stat().st_size, _sha256(unverified)
    if (size, actual) != (entry["size"], entry["sha256"]):
        unverified.unlink()
        raise ChecksumError(
            f"shipped checkpoint {file_name} downloaded from {url} does not match redo_lib's manifest: "
            f"{size} bytes, SHA-256 {actual}; expected {entry['size']} bytes, SHA-256 {entry['sha256']}. "
            f"The download was deleted. Fix: {fix}"
        )
    os.replace(unverified, target)
    return target


def _version() -> str:
    from . import __version__

    return __version__


def shipped_checkpoint(name: str = "synthetic-flat", *, download: bool = True,
                       progress: bool = False) -> Path:
    """Path of a checkpoint shipped with the book, ``data/checkpoints/<name>.pt``.

    1. In a checkout of the repository: found above the current folder (notebooks run in
       ``book/``) or above the package (an editable install).
    2. Otherwise (redo_lib installed with pip), when ``download`` is true and the name is
       in the manifest packaged with redo_lib: downloaded once from :data:`RAW_BASE_URL`
       (or ``$REDO_CHECKPOINT_URL``) into :func:`checkpoint_cache_dir`, with its
       ``<name>_metrics.jsonl`` log beside it, each checked against the manifest's SHA-256.

    Raises ``FileNotFoundError`` (its message lists the known names) when the name is
    found neither locally nor in the manifest, or when ``download`` is false;
    :class:`~redo_lib.data.errors.ChecksumError` when a download does not match the
    manifest; :class:`~redo_lib.data.errors.DownloadError` when it fails.
    """
    local = _local_checkpoint(name)
    if local is not None:
        return local
    file_name = f"{name}.pt"
    manifest = shipped_manifest()
    if file_name not in manifest or not download:
        known = sorted(entry[: -len(".pt")] for entry in manifest if entry.endswith(".pt"))
        where = ", ".join(str(start) for start in _search_starts())
        reason = ("downloading is switched off (download=False)" if file_name in manifest
                  else f"known names: {', '.join(known) if known else 'none (redo_lib has no manifest)'}")
        raise FileNotFoundError(
            f"no shipped checkpoint {name!r}: no data/checkpoints/{file_name} above {where}, and {reason}. "
            f"Train one (redo train --preset {name}) or clone the repository and run from it"
        )
    path = _download_shipped(file_name, manifest[file_name], progress)
    log = f"{name}_metrics.jsonl"
    if log in manifest:
        _download_shipped(log, manifest[log], progress)
    return path
