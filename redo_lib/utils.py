"""Small helpers the notebooks and the command line share: seeding and device choice."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "pick_device", "full_size_requested"]


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


def full_size_requested() -> bool:
    """True when ``REDO_FULL=1``: notebooks switch from small CPU defaults to GPU settings."""
    return os.environ.get("REDO_FULL", "0").strip().lower() in ("1", "true", "yes")


def shipped_checkpoint(name: str = "synthetic") -> "os.PathLike[str]":
    """Path of a checkpoint shipped in the repository, ``data/checkpoints/<name>.pt``.

    Looked for above the current folder (notebooks run in ``book/``) and above the package
    (an editable install). A pip-installed package has no ``data/``: clone the repository
    (the book's set-up cell does that on Colab).
    """
    from pathlib import Path

    relative = Path("data") / "checkpoints" / f"{name}.pt"
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / relative
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"no shipped checkpoint {relative} above {', '.join(str(s) for s in starts)}; "
        "clone the repository (git clone https://github.com/redo-book/redo-book) and run from it, "
        f"or train one: redo train --preset {name}"
    )
