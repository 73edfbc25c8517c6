"""Small helpers the notebooks and the command line share: seeding, device and precision choice."""
from __future__ import annotations

import os
import random
from typing import NamedTuple, Optional, Union

import numpy as np
import torch

__all__ = ["seed_everything", "pick_device", "full_size_requested", "AmpChoice", "amp_choice", "amp_dtype"]


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
