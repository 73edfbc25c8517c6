"""Trainers on random images, for timing and profiling training iterations.

``benchmarks/train_step.py``, ``profile_step.py`` and ``official_speed.py`` and the
compile tests all time or trace :meth:`Trainer.train_iteration` without a data set on
disk; this module builds that trainer once for all of them.
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict, Iterable, Optional

import torch

from ..config import ReDOConfig, get_preset
from .trainer import Trainer

__all__ = ["RandomImages", "benchmark_config", "benchmark_trainer"]


class RandomImages:
    """A data set of fixed random images in [-1, 1] with the synthetic data's vectorised ``batch``."""

    has_masks = False

    def __init__(self, n: int, image_size: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, image_size, image_size, generator=g) * 2 - 1

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Dict[str, object]:
        return {"image": self.images[index], "index": index}

    def batch(self, indices: Iterable[int]) -> Dict[str, torch.Tensor]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return {"image": self.images[idx], "index": idx}


def benchmark_config(preset: str, batch_size: Optional[int] = None, device: str = "cpu", *,
                     image_size: Optional[int] = None, path: str = "fast", amp: bool = True,
                     channels_last: bool = True, compile: bool = False) -> ReDOConfig:
    """A preset's configuration with the batch size, device and image size of a measurement.

    ``path="fast"``: the trainer's loop, with channels-last (when ``channels_last``), mixed
    precision on CUDA (when ``amp``) and ``torch.compile`` when ``compile``;
    ``path="plain"``: float32 eager mode, none of them (pair it with
    ``benchmark_trainer(..., official_semantics=True)``).
    """
    if path not in ("fast", "plain"):
        raise ValueError(f"path must be 'fast' or 'plain', got {path!r}")
    config = get_preset(preset)
    if batch_size is not None:
        config.train.batch_size = batch_size
    config.train.device = device
    if image_size:
        config.model.image_size = image_size
    fast = path == "fast"
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    config.train.amp = fast and on_cuda and amp
    config.train.channels_last = fast and channels_last
    config.train.compile = fast and compile
    return config.validate()


def benchmark_trainer(config: ReDOConfig, *, official_semantics: bool = False) -> Trainer:
    """A :class:`Trainer` on :class:`RandomImages` that writes nothing and logs nothing.

    ``official_semantics``: D's weight gradients are computed in the generator step and
    zeroed before the D step, as the official code does (the same updates, more work);
    otherwise D is frozen in the generator step, the trainer's default.
    """
    tc = config.train
    data = RandomImages(tc.batch_size * (1 + tc.d_steps) * 2, config.model.image_size)
    out = os.path.join(tempfile.gettempdir(), "redo-bench-unused")  # nothing is written (write_files=False)
    return Trainer(config, out, data, None, progress=False, write_files=False,
                   freeze_d_in_g_step=not official_semantics, log=lambda message: None)
