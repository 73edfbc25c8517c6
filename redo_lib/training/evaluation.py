"""Scoring a mask predictor on a data split, under both protocols.

Every image counts once (no batch averages, no dropped last batch); the official
per-image polarity and the stricter data-set polarity come from
:class:`~redo_lib.metrics.SegmentationMeter`.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
from torch.utils.data import Dataset

from ..metrics import SegmentationMeter
from .data import iterate_batches

__all__ = ["has_masks", "evaluate_masks", "evaluate_model"]


def has_masks(dataset: Dataset) -> bool:
    """Whether the data set's items carry ground truth (``"mask"``)."""
    flag = getattr(dataset, "has_masks", None)
    if flag is not None:
        return bool(flag)
    if len(dataset) == 0:
        return False
    return "mask" in dataset[0]


def evaluate_masks(predict: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, n_regions: int, *,
                   batch_size: int = 50, max_images: int = 0, indices: Optional[Sequence[int]] = None,
                   device: torch.device | str = "cpu", num_workers: int = 0,
                   autocast_dtype: Optional[torch.dtype] = None) -> Dict[str, float]:
    """Score ``predict(images (B,3,H,W) in [-1,1]) -> soft masks (B,K,H,W)`` on ``dataset``.

    In float32 unless ``autocast_dtype`` is given: autocast is switched *off* even when the
    caller runs under it (a training loop's mixed precision), because float16 / bfloat16
    masks near the 0.5 threshold flip and the scores would disagree with a float32
    evaluation (the accuracy and IoU of Chen et al., NeurIPS 2019).
    """
    if not has_masks(dataset):
        raise ValueError("this split has no ground-truth masks to evaluate against")
    device = torch.device(device)
    meter = SegmentationMeter(n_regions)
    amp = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
           else torch.autocast(device.type, enabled=False))
    with torch.no_grad():
        for batch in iterate_batches(dataset, batch_size, max_items=max_images, indices=indices,
                                     num_workers=num_workers, pin_memory=device.type == "cuda"):
            images = batch["image"].to(device)
            with amp:
                masks = predict(images)
            meter.update(masks.float(), batch["mask"].to(device))
    return meter.compute()


def evaluate_model(model, dataset: Dataset, **kwargs) -> Dict[str, float]:
    """Score a :class:`~redo_lib.ReDO` model's mask network (switched to eval mode)."""
    was_training = model.training
    model.eval()
    try:
        return evaluate_masks(model.mask_net, dataset, model.n_regions, **kwargs)
    finally:
        model.train(was_training)
