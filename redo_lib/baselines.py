"""Simple segmentation baselines, scored exactly like ReDO's mask network F.

Each baseline is a function ``images (B, 3, H, W) in [-1, 1] -> masks (B, 2, H, W)``
with the same output convention as F: region 0 is the predicted object, region 1 the
background, and the values are 0 / 1 (hard masks that sum to 1 at every pixel). So
``SegmentationMeter(2).update(masks, truth)`` scores them under both protocols of spec
section 5 (per-image polarity, and one fixed assignment for the whole data set).

They answer "how much of ReDO's score does an unsupervised method with no learning get?":

* ``all-foreground``: everything is the object. Its IoU is the mean object fraction of
  the ground truth (the per-image polarity cannot help: the other choice has IoU 0).
* ``centred-disk``: a disk in the middle of the image, radius ``0.35`` of the side by
  default (it covers :math:`\\pi \\cdot 0.35^2 \\approx 38\\%` of the image). Data sets of
  centred objects (Flowers, CUB, LFW's faces) make this a strong prior.
* ``kmeans``: per-image two-colour k-means (Lloyd's algorithm on the RGB values),
  vectorised over the batch in torch. Deterministic: the two centres start at the mean
  colour of the central half of the image and the mean colour of its border. The object is
  the cluster owning the smaller share of the border pixels.
* ``grabcut``: OpenCV's GrabCut (Rother et al., 2004), initialised with a centred
  rectangle 5 % of the side away from every edge (outside it: sure background; inside:
  probable object), 5 iterations. The IEM paper reports GrabCut at 0.820 / 0.692
  (accuracy / IoU) on Flowers (the paper's Table 1).
* ``iem``: Inpainting Error Maximization (Savarese et al., CVPR 2021), the mask that makes
  foreground and background hardest to inpaint from each other, found by boundary-only
  sign steps from a centred square; its hyper-parameters scale with the image size. See
  :mod:`redo_lib.iem`.

:func:`evaluate_baseline` runs one of them over a data set and returns the
:class:`~redo_lib.metrics.SegmentationMeter` scores and the time per image
(:class:`TimedBaseline`).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Dict, Optional

import numpy as np
import torch

from .iem import iem
from .metrics import SegmentationMeter

__all__ = [
    "BASELINES",
    "all_foreground",
    "centred_disk",
    "disk_radius_for_fraction",
    "kmeans",
    "grabcut",
    "iem",
    "TimedBaseline",
    "evaluate_baseline",
]

Tensor = torch.Tensor

#: Default disk radius of ``centred-disk``, as a fraction of the image side.
DISK_RADIUS = 0.35
#: Default margin of GrabCut's initial rectangle, as a fraction of the image side.
GRABCUT_MARGIN = 0.05
#: Default number of GrabCut iterations.
GRABCUT_ITERATIONS = 5
#: Default number of Lloyd iterations of ``kmeans``.
KMEANS_ITERATIONS = 10


def _check(images: Tensor) -> Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    return images


def _two_regions(foreground: Tensor) -> Tensor:
    """Boolean object masks (B, H, W) -> (B, 2, H, W) float: region 0 object, region 1 the rest."""
    fg = foreground.float().unsqueeze(1)
    return torch.cat([fg, 1 - fg], dim=1)


def all_foreground(images: Tensor) -> Tensor:
    """Every pixel is the object: (B, 2, H, W) with region 0 all ones."""
    images = _check(images)
    b, _, h, w = images.shape
    return _two_regions(torch.ones(b, h, w, dtype=torch.bool, device=images.device))


def disk_radius_for_fraction(fraction: float) -> float:
    """The radius (fraction of the side) of a centred disk covering ``fraction`` of the image.

    :math:`r = \\sqrt{f / \\pi}`, valid while the disk fits (f <= pi / 4).
    """
    if not 0 < fraction <= math.pi / 4:
        raise ValueError(f"fraction must be in (0, pi/4] for the disk to fit, got {fraction}")
    return math.sqrt(fraction / math.pi)


def centred_disk(images: Tensor, radius: float = DISK_RADIUS) -> Tensor:
    """A disk centred in the image, ``radius`` times the side (default 0.35, ~38 % of the pixels).

    Pixel centres at distance <= ``radius * side`` from the image centre are the object.
    Use :func:`disk_radius_for_fraction` to match a data set's mean object fraction.
    """
    images = _check(images)
    b, _, h, w = images.shape
    ys = (torch.arange(h, device=images.device, dtype=torch.float32) + 0.5) / h - 0.5
    xs = (torch.arange(w, device=images.device, dtype=torch.float32) + 0.5) / w - 0.5
    # Distances in units of the side (for a non-square image, of each side: an ellipse).
    disk = ys[:, None] ** 2 + xs[None, :] ** 2 <= radius ** 2
    return _two_regions(disk.expand(b, h, w))


def _border(h: int, w: int, device) -> Tensor:
    """Boolean (H, W): the one-pixel frame of the image."""
    frame = torch.zeros(h, w, dtype=torch.bool, device=device)
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = True
    return frame


def kmeans(images: Tensor, n_iter: int = KMEANS_ITERATIONS) -> Tensor:
    """Per-image two-colour k-means on RGB, vectorised over the batch.

    Initial centres: the mean colour of the central half (the box from 1/4 to 3/4 of each
    side) and the mean colour of the one-pixel border; when those coincide (to 1e-6), the
    second centre is the pixel farthest from the first. ``n_iter`` Lloyd iterations
    (assign every pixel to the nearer centre, move each centre to its pixels' mean; an
    empty cluster keeps its centre). The object (region 0) is the cluster holding the
    smaller fraction of the border pixels (ties: the cluster of the central centre).
    """
    images = _check(images).float()
    b, _, h, w = images.shape
    pixels = images.flatten(2).transpose(1, 2).contiguous()  # (B, N, 3)
    centre_box = torch.zeros(h, w, dtype=torch.bool, device=images.device)
    centre_box[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    border = _border(h, w, images.device)
    c0 = pixels[:, centre_box.flatten()].mean(1)  # (B, 3)
    c1 = pixels[:, border.flatten()].mean(1)
    # Degenerate start (same mean colours): take the pixel farthest from c0 instead.
    far = pixels[torch.arange(b), ((pixels - c0[:, None]) ** 2).sum(-1).argmax(1)]
    same = ((c0 - c1) ** 2).sum(-1, keepdim=True) < 1e-12
    c1 = torch.where(same, far, c1)
    centres = torch.stack([c0, c1], dim=1)  # (B, 2, 3)

    total = pixels.sum(1)  # (B, 3)
    n = pixels.shape[1]
    for _ in range(n_iter):
        in1 = _nearest(pixels, centres).float()  # (B, N): 1 where the pixel joins centre 1
        count1 = in1.sum(1, keepdim=True)  # (B, 1)
        sum1 = (in1.unsqueeze(1) @ pixels).squeeze(1)  # (B, 3)
        counts = torch.cat([n - count1, count1], dim=1)  # (B, 2)
        sums = torch.stack([total - sum1, sum1], dim=1)  # (B, 2, 3)
        moved = sums / counts.clamp_min(1).unsqueeze(-1)
        centres = torch.where(counts.unsqueeze(-1) > 0, moved, centres)
    assign = _nearest(pixels, centres).view(b, h, w)

    # Polarity: the object is the cluster that touches the border least.
    on_border = assign[:, border]  # (B, n_border)
    share1 = on_border.float().mean(1)  # fraction of the border in cluster 1
    object_cluster = (share1 < 0.5).long()  # cluster 1 owns less of the border -> it is the object
    return _two_regions(assign == object_cluster.view(b, 1, 1))


def _nearest(pixels: Tensor, centres: Tensor) -> Tensor:
    """Index (B, N) of the nearer of two centres (B, 2, 3) for pixels (B, N, 3); ties -> 0.

    :math:`\\|p - c_1\\|^2 < \\|p - c_0\\|^2 \\iff p \\cdot (c_1 - c_0) > (\\|c_1\\|^2 - \\|c_0\\|^2) / 2`:
    one batched matrix-vector product instead of two (B, N, 3) distance tensors.
    """
    direction = (centres[:, 1] - centres[:, 0]).unsqueeze(-1)  # (B, 3, 1)
    offset = 0.5 * (centres[:, 1].pow(2).sum(-1) - centres[:, 0].pow(2).sum(-1))  # (B,)
    return ((pixels @ direction).squeeze(-1) > offset.unsqueeze(1)).long()


def _import_cv2():
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            "the grabcut baseline needs OpenCV: pip install opencv-python-headless "
            "(or pip install 'redo-lib[baselines]')"
        ) from error
    return cv2


def grabcut(images: Tensor, margin: float = GRABCUT_MARGIN, n_iter: int = GRABCUT_ITERATIONS,
            seed: int = 0) -> Tensor:
    """OpenCV GrabCut from a centred rectangle: (B, 2, H, W) hard masks, region 0 the object.

    The rectangle leaves ``margin`` of the side (default 5 %, at least one pixel) on every
    edge: outside it is sure background, inside probable object. ``n_iter`` (default 5)
    rounds of colour-model fitting and graph cut; the object is every pixel GrabCut labels
    object or probable object. OpenCV's random generator is seeded with ``seed`` before
    each image (its GMM initialisation uses k-means), so results are reproducible. An image
    on which GrabCut fails (for example one of a single colour) gets the rectangle itself.
    Runs image by image on the CPU.
    """
    cv2 = _import_cv2()
    images = _check(images)
    b, _, h, w = images.shape
    my, mx = max(1, round(margin * h)), max(1, round(margin * w))
    if h - 2 * my < 1 or w - 2 * mx < 1:
        raise ValueError(f"margin={margin} leaves no rectangle in a {h} x {w} image")
    rect = (mx, my, w - 2 * mx, h - 2 * my)  # x, y, width, height
    # uint8 H x W x 3 BGR, what OpenCV expects.
    array = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).flip(-1).contiguous().numpy()
    out = np.zeros((b, h, w), dtype=bool)
    fallback = np.zeros((h, w), dtype=bool)
    fallback[my : h - my, mx : w - mx] = True
    for i in range(b):
        mask = np.zeros((h, w), dtype=np.uint8)
        background_model = np.zeros((1, 65), dtype=np.float64)
        foreground_model = np.zeros((1, 65), dtype=np.float64)
        cv2.setRNGSeed(seed)
        try:
            cv2.grabCut(array[i], mask, rect, background_model, foreground_model, n_iter,
                        cv2.GC_INIT_WITH_RECT)
        except cv2.error:
            out[i] = fallback
            continue
        out[i] = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return _two_regions(torch.from_numpy(out).to(images.device))


#: name -> baseline function ``images (B, 3, H, W) in [-1, 1] -> masks (B, 2, H, W)``.
BASELINES: Dict[str, Callable[..., Tensor]] = {
    "all-foreground": all_foreground,
    "centred-disk": centred_disk,
    "kmeans": kmeans,
    "grabcut": grabcut,
    "iem": iem,
}


class TimedBaseline:
    """A baseline function that adds up how long its calls take, and counts the images.

    ``TimedBaseline(function)(images, **options)`` returns ``function(images, **options)``;
    :meth:`per_image` gives ``seconds_per_image`` (wall clock), ``cpu_seconds_per_image``
    (this process's CPU time, all its threads together) and ``threads``
    (``torch.get_num_threads()``). ``progress`` (optional) is a tqdm bar advanced by the
    number of images of each call.
    """

    def __init__(self, function: Callable[..., Tensor], progress=None):
        self.function, self.progress = function, progress
        self.seconds = self.cpu_seconds = 0.0
        self.n_images = 0

    def __call__(self, images: Tensor, **options) -> Tensor:
        wall, cpu = time.perf_counter(), time.process_time()
        masks = self.function(images, **options)
        self.seconds += time.perf_counter() - wall
        self.cpu_seconds += time.process_time() - cpu
        self.n_images += len(images)
        if self.progress is not None:
            self.progress.update(len(images))
        return masks

    def per_image(self) -> Dict[str, float]:
        n = max(self.n_images, 1)
        return {"seconds_per_image": self.seconds / n, "cpu_seconds_per_image": self.cpu_seconds / n,
                "threads": torch.get_num_threads()}


def _collate(items):
    return {
        "image": torch.stack([item["image"] for item in items]),
        "mask": torch.stack([item["mask"] for item in items]),
    }


def evaluate_baseline(name: str, dataset, batch_size: int = 64, max_images: Optional[int] = None, *,
                      progress: bool = True, **options) -> Dict[str, float]:
    """Score baseline ``name`` on ``dataset`` with :class:`~redo_lib.metrics.SegmentationMeter`.

    ``dataset`` yields dicts with ``"image"`` (3, S, S) in [-1, 1] and ``"mask"`` (1, S, S)
    or one-hot (C, S, S). Every image counts once (the first ``max_images`` when given, in
    order). ``options`` go to the baseline (``radius=`` for ``centred-disk``, ``margin=`` /
    ``n_iter=`` for ``grabcut``, ...). Returns ``SegmentationMeter.compute()``: accuracy,
    iou (per-image polarity, the official protocol), accuracy_dataset, iou_dataset (one
    polarity for the whole data set), n_images, min_region_size, assignment, and the time
    the baseline took (:meth:`TimedBaseline.per_image`: seconds_per_image,
    cpu_seconds_per_image, threads).
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of: {', '.join(BASELINES)}")
    function = TimedBaseline(BASELINES[name])
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    if max_images is not None:
        dataset = Subset(dataset, range(min(int(max_images), len(dataset))))
    first = dataset[0] if len(dataset) else None
    if first is None:
        raise ValueError("the data set is empty")
    if "mask" not in first:
        raise ValueError("the data set has no ground-truth masks ('mask'): a baseline cannot be scored on it")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate)
    meter = SegmentationMeter(n_regions=2)
    with torch.no_grad():
        for batch in tqdm(loader, desc=name, disable=not progress, leave=False):
            meter.update(function(batch["image"], **options), batch["mask"])
    return {**meter.compute(), **function.per_image()}
