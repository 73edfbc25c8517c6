"""Segmentation metrics under two protocols.

- **Official** (per image): region 0's soft mask thresholded at 0.5; for each image the
  accuracy is the best of the two ways of calling the predicted region foreground, and
  the foreground IoU is the best of the two as well (the two maxima taken independently).
- **Data set** (stricter): one assignment of regions to classes for the whole data set,
  the one with the best mean foreground IoU; accuracy and IoU both use it.

For K > 2 regions (or C > 2 classes) the per-image maxima become the best
region-to-class matchings (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`):
accuracy matches all classes maximising the agreeing pixels, IoU matches the object
classes maximising their mean IoU. Every image counts once (no batch averages, no dropped
last batch). An empty union (no foreground in truth nor prediction) scores IoU 1.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["hard_regions", "region_shares", "confusion", "SegmentationMeter", "binary_scores", "object_polarity"]


def hard_regions(masks: torch.Tensor) -> torch.Tensor:
    """Soft masks (B, K, H, W) -> region index per pixel (B, H, W).

    K = 2: region 0 where its mask is >= 0.5 (the official threshold); K > 2: argmax.
    """
    if masks.shape[1] == 2:
        return (masks[:, 0] < 0.5).long()
    return masks.argmax(dim=1)


def region_shares(masks: torch.Tensor) -> Dict[str, torch.Tensor]:
    """How much of each image each region holds, (B, K) each: ``soft`` (the mean of its soft
    mask, what a loss on the masks sees) and ``hard`` (the share of pixels
    :func:`hard_regions` gives it, what the scores see). A region can hold a fifth of an
    image as a faint haze below 0.5 and no pixel of it once thresholded.
    """
    regions = hard_regions(masks)
    hard = torch.stack([(regions == k).float().mean(dim=(-2, -1)) for k in range(masks.shape[1])], dim=1)
    return {"soft": masks.float().mean(dim=(-2, -1)), "hard": hard}


def truth_classes(truth: torch.Tensor) -> torch.Tensor:
    """Ground truth -> class index per pixel (B, H, W); the background is the last class.

    (B, 1, H, W) binary foreground -> classes {0: foreground, 1: background};
    (B, C, H, W) one-hot (objects first, background last) -> argmax.
    """
    if truth.dim() != 4:
        raise ValueError(f"ground truth must be (B, C, H, W), got {tuple(truth.shape)}")
    if truth.shape[1] == 1:
        return (truth[:, 0] < 0.5).long()
    return truth.argmax(dim=1)


def confusion(pred: torch.Tensor, truth: torch.Tensor, n_regions: int, n_classes: int) -> torch.Tensor:
    """Pixel counts per image: ``out[b, k, c] = #{pred == k and truth == c}``, (B, K, C)."""
    b = pred.shape[0]
    flat = (pred * n_classes + truth).reshape(b, -1)
    counts = torch.zeros(b, n_regions * n_classes, dtype=torch.float64, device=pred.device)
    counts.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
    return counts.view(b, n_regions, n_classes)


def _iou_matrix(conf: torch.Tensor) -> torch.Tensor:
    """IoU of every region with every class, (B, K, C); an empty union counts as 1."""
    inter = conf
    union = conf.sum(2, keepdim=True) + conf.sum(1, keepdim=True) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))


def binary_scores(pred_fg: torch.Tensor, truth_fg: torch.Tensor):
    """Per-image accuracy and foreground IoU of boolean masks (B, H, W): two (B,) tensors."""
    pred_fg, truth_fg = pred_fg.bool(), truth_fg.bool()
    acc = (pred_fg == truth_fg).double().flatten(1).mean(1)
    inter = (pred_fg & truth_fg).double().flatten(1).sum(1)
    union = (pred_fg | truth_fg).double().flatten(1).sum(1)
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    return acc, iou


def object_polarity(region0: torch.Tensor, truth_fg: torch.Tensor,
                    threshold: float = 0.5) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """K = 2, per image: which region plays the object, as the official protocol decides.

    ``region0`` is region 0's soft mask (B, H, W), ``truth_fg`` the true object (B, H, W).
    Region 0 thresholded at ``threshold`` is scored against the object, and so is its
    complement (region 1); the better IoU wins. Returns the winning region's soft mask
    (B, H, W), its IoU (B,) and ``flipped`` (B,), True where region 1 plays the object.
    """
    pred, truth = region0 >= threshold, truth_fg.bool()
    iou_direct, iou_flipped = binary_scores(pred, truth)[1], binary_scores(~pred, truth)[1]
    flipped = iou_flipped > iou_direct
    soft = torch.where(flipped[:, None, None], 1 - region0, region0)
    return soft, torch.maximum(iou_direct, iou_flipped), flipped


class SegmentationMeter:
    """Accumulates per-image confusion matrices and scores both protocols.

    >>> meter = SegmentationMeter(n_regions=2)
    >>> meter.update(masks, truth)        # soft masks (B, K, H, W), truth (B, 1|C, H, W)
    >>> meter.compute()                    # accuracy, iou, accuracy_dataset, iou_dataset, ...
    """

    def __init__(self, n_regions: int) -> None:
        self.n_regions = n_regions
        self._conf: List[np.ndarray] = []

    def update(self, masks: torch.Tensor, truth: torch.Tensor) -> None:
        if masks.shape[1] != self.n_regions:
            raise ValueError(f"expected {self.n_regions} regions, got masks {tuple(masks.shape)}")
        if masks.shape[-2:] != truth.shape[-2:]:
            raise ValueError(f"masks {tuple(masks.shape)} and truth {tuple(truth.shape)} differ in size")
        n_classes = max(2, truth.shape[1])
        conf = confusion(hard_regions(masks.detach()), truth_classes(truth.detach()), self.n_regions, n_classes)
        self._conf.append(conf.cpu().numpy())

    def update_hard(self, pred: torch.Tensor, truth: torch.Tensor) -> None:
        """Like :meth:`update` for hard region indices (B, H, W) (used by the baselines)."""
        n_classes = max(2, truth.shape[1])
        conf = confusion(pred.long(), truth_classes(truth), self.n_regions, n_classes)
        self._conf.append(conf.cpu().numpy())

    @property
    def n_images(self) -> int:
        return sum(len(c) for c in self._conf)

    def compute(self) -> Dict[str, float]:
        if not self._conf:
            raise ValueError("no image was scored: the evaluation split is empty or has no masks")
        conf = torch.from_numpy(np.concatenate(self._conf))  # (N, K, C)
        n, k, c = conf.shape
        pixels = conf.sum(dim=(1, 2))
        iou = _iou_matrix(conf)  # (N, K, C)
        objects = slice(0, c - 1)  # every class but the background (the last)

        # Official protocol: the best matching for each image, independently for each score.
        acc_img = np.empty(n)
        iou_img = np.empty(n)
        for i in range(n):
            rows, cols = linear_sum_assignment(conf[i].numpy(), maximize=True)
            acc_img[i] = conf[i].numpy()[rows, cols].sum() / pixels[i].item()
            obj = iou[i][:, objects].numpy()
            rows, cols = linear_sum_assignment(obj, maximize=True)
            iou_img[i] = obj[rows, cols].sum() / obj.shape[1]

        # Data-set protocol: one assignment for all images, by the mean object IoU.
        weights = iou[:, :, objects].sum(0).numpy()
        weights = np.concatenate([weights, np.zeros((k, 1))], axis=1)  # background: leftover region
        rows, cols = linear_sum_assignment(weights, maximize=True)
        assign = dict(zip(cols.tolist(), rows.tolist()))  # class -> region
        obj_classes = list(range(c - 1))
        iou_ds = torch.stack([iou[:, assign[j], j] for j in obj_classes], 1).mean(1)
        agree = sum(conf[:, assign[j], j] for j in range(c) if j in assign)
        acc_ds = agree / pixels

        sizes = conf.sum(2).sum(0) / pixels.sum()  # fraction of pixels given to each region
        return {
            "accuracy": float(acc_img.mean()),
            "iou": float(iou_img.mean()),
            "accuracy_dataset": float(acc_ds.mean()),
            "iou_dataset": float(iou_ds.mean()),
            "n_images": int(n),
            "min_region_size": float(sizes.min()),
            "assignment": [assign.get(j, -1) for j in range(c)],
        }
