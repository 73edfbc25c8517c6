"""IEM: segmentation by Inpainting Error Maximization, a baseline with nothing learned.

Savarese, Kim, Maire, Shakhnarovich and McAllester, "Information-Theoretic Segmentation
by Inpainting Error Maximization", CVPR 2021. Written from the method's published
description (the paper's abstract and project page, the authors' README for the default
values, and the summary in ``shared/reference/related-tricks.md``), not from their code.

The idea: a good foreground / background split makes each region hard to predict from
the other (the two sets of pixels share little information). IEM fixes a cheap inpainter
and searches, image by image, for the binary mask :math:`M` (object) and
:math:`\\bar M = 1 - M` (background) that **maximise** the inpainting error

.. math::

    \\mathcal{L}(M) = \\frac{\\sum_p M_p\\, |X_p - \\phi(X, \\bar M)_p|}{\\sum_p M_p}
                    + \\frac{\\sum_p \\bar M_p\\, |X_p - \\phi(X, M)_p|}{\\sum_p \\bar M_p}
                    - \\lambda \\left(\\mathrm{Var}_M(X) + \\mathrm{Var}_{\\bar M}(X)\\right),

the foreground inpainted from the background plus the background inpainted from the
foreground (L1, averaged over the colour channels and over each region's pixels), minus a
small weight :math:`\\lambda` times the colour variance inside each region (homogeneous
regions are preferred). The inpainter is normalised Gaussian filtering: the pixels of the
region ``visible`` predict every pixel as

.. math::  \\phi(X, V) = \\frac{G * (X \\odot V)}{G * V},

with :math:`G` a Gaussian blur (applied ``blur_passes`` times). A constant image is
reproduced exactly wherever a visible pixel lies within the blur's reach; farther away
(where :math:`G * V` vanishes) the prediction is the visible region's mean colour (this
fallback is this implementation's choice; the description does not say).

The search (a fixed number of steps, from a centred square):

1. the gradient :math:`\\partial \\mathcal{L} / \\partial M` at the current binary mask
   (the mask relaxed to real values only to differentiate);
2. only pixels on the mask's boundary (within ``boundary_width`` 4-neighbour steps of a
   pixel of the other label) may change: each takes the label the gradient's sign asks for
   (object where it is positive, background where it is negative; a zero gradient keeps
   the label) -- a sign step, so there is no step size;
3. a 3 x 3 majority filter (each pixel takes the label of most of its neighbourhood,
   counting only pixels inside the image; a tie keeps the label).

Hyper-parameters (:class:`IEMConfig`) are the paper's at 128 x 128 and are scaled to the
image size by :meth:`IEMConfig.for_image_size` (blur sigma, kernel radius and the number
of steps in proportion to the side; the boundary width stays one pixel, the initial
square's margin stays a fraction of the side).

Published (the ReDO splits and metric, 128 x 128): Flowers accuracy 0.883 / IoU 0.768,
CUB 0.886 / 0.522 (IEM alone, before the paper's optional learned refinement).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = [
    "PAPER_IMAGE_SIZE",
    "IEMConfig",
    "gaussian_kernel",
    "blur_matrix",
    "blur",
    "inpaint",
    "inpainting_error",
    "boundary",
    "majority_filter",
    "initial_mask",
    "iem_step",
    "iem_masks",
    "iem",
]

Tensor = torch.Tensor

#: The side of the images the paper's hyper-parameters were chosen for.
PAPER_IMAGE_SIZE = 128
#: Where ``G * V`` is below this, no visible pixel is within reach (see :func:`inpaint`).
REACH_EPS = 1e-6


@dataclass(frozen=True)
class IEMConfig:
    """IEM's hyper-parameters; the defaults are the authors' (README defaults), for 128 x 128 images.

    * ``sigma`` (5.0) and ``kernel_size`` (11): the inpainter's Gaussian blur, a
      ``kernel_size``-tap kernel (odd) of standard deviation ``sigma`` pixels;
    * ``blur_passes`` (2): how many times the blur is applied (its reach is
      ``blur_passes * (kernel_size // 2)`` pixels);
    * ``n_steps`` (150): mask updates;
    * ``margin`` (0.2): the initial mask is the centred square leaving this fraction of
      the side on every edge (at 0.2: 60 % of the side, 36 % of the pixels);
    * ``variance_weight`` (0.001): :math:`\\lambda`, the weight of the within-region
      colour variance (images mapped to [0, 1]);
    * ``boundary_width`` (1): how far (4-neighbour steps) from a pixel of the other label
      a pixel may still change in one step.

    Use :meth:`for_image_size` for other image sizes.
    """

    sigma: float = 5.0
    kernel_size: int = 11
    blur_passes: int = 2
    n_steps: int = 150
    margin: float = 0.2
    variance_weight: float = 1e-3
    boundary_width: int = 1

    def __post_init__(self):
        if not self.sigma > 0:
            raise ValueError(f"IEMConfig.sigma must be positive, got {self.sigma}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"IEMConfig.kernel_size must be a positive odd number, got {self.kernel_size}")
        if self.blur_passes < 1:
            raise ValueError(f"IEMConfig.blur_passes must be at least 1, got {self.blur_passes}")
        if self.n_steps < 0:
            raise ValueError(f"IEMConfig.n_steps must be >= 0, got {self.n_steps}")
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"IEMConfig.margin must be in [0, 0.5) of the side, got {self.margin}")
        if self.variance_weight < 0:
            raise ValueError(f"IEMConfig.variance_weight must be >= 0, got {self.variance_weight}")
        if self.boundary_width < 1:
            raise ValueError(f"IEMConfig.boundary_width must be at least 1, got {self.boundary_width}")

    @classmethod
    def for_image_size(cls, size: int, **overrides) -> "IEMConfig":
        """The paper's values scaled from 128 px to ``size`` px, then ``overrides`` applied.

        With :math:`s = \\text{size} / 128`: sigma :math:`5 s`; kernel radius
        :math:`\\max(1, \\lfloor 5 s + 0.5 \\rfloor)` (kernel 3 at 32 px, 7 at 64, 11 at 128);
        steps :math:`\\lceil 150 s \\rceil` (38 at 32 px, 75 at 64: the boundary moves about
        a pixel per step, so the same number of steps per pixel of side). The blur passes,
        the variance weight, the initial margin (a fraction of the side) and the one-pixel
        boundary width do not depend on the size.

        Measured at 32 px on the validation splits of the four synthetic levels (256 images
        each; ``benchmarks/ladder.py`` stores the test scores of these scaled values): the
        search has converged by step 38 (76 steps change no IoU by more than 0.001); twice
        the scaled blur (sigma 2.5, kernel 5) scores higher on every level (IoU 0.935 ->
        0.988 flat, 0.851 -> 0.961 gradient, 0.854 -> 0.923 soft, 0.715 -> 0.769
        textured); a smaller start (margin 0.3) fails (IoU about 0.33). The search shrinks
        a mask onto an object far more readily than it grows one into a flat interior,
        where no colour change lies within the blur's reach.
        """
        if size < 4:
            raise ValueError(f"IEM needs images of at least 4 x 4 pixels, got {size}")
        paper = cls()
        scale = size / PAPER_IMAGE_SIZE
        radius = max(1, math.floor((paper.kernel_size // 2) * scale + 0.5))
        scaled = cls(sigma=paper.sigma * scale, kernel_size=2 * radius + 1,
                     n_steps=max(1, math.ceil(paper.n_steps * scale)))
        return scaled.replace(**overrides)

    def replace(self, **overrides) -> "IEMConfig":
        """A copy with ``overrides`` applied; an unknown name is a ValueError listing the valid ones."""
        names = [field.name for field in dataclasses.fields(self)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown IEM option(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        return dataclasses.replace(self, **overrides)


def gaussian_kernel(sigma: float, size: int, dtype=torch.float32, device=None) -> Tensor:
    """The 1-D Gaussian (``size`` taps, standard deviation ``sigma``), summing to 1."""
    offsets = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def blur_matrix(size: int, config: IEMConfig, dtype=torch.float32, device=None) -> Tensor:
    """The (size, size) matrix of the 1-D blur along one axis, all ``blur_passes`` passes in one.

    One pass is the banded Toeplitz matrix of :func:`gaussian_kernel` (zero outside the
    image); ``blur_passes`` passes are its matrix power. As a matrix product the blur and
    its gradient are two small matrix multiplications, much faster on a CPU than depthwise
    convolutions and their backward pass (same numbers, see the tests).
    """
    kernel = gaussian_kernel(config.sigma, config.kernel_size, torch.float64)
    radius = config.kernel_size // 2
    index = torch.arange(size)
    offset = index[None, :] - index[:, None]  # column - row
    one_pass = torch.where(offset.abs() <= radius, kernel[(offset + radius).clamp(0, config.kernel_size - 1)],
                           torch.zeros((), dtype=torch.float64))
    return torch.linalg.matrix_power(one_pass, config.blur_passes).to(dtype=dtype, device=device)


def blur(x: Tensor, config: IEMConfig) -> Tensor:
    """The Gaussian blur :math:`G *` of every channel of ``x`` (B, C, H, W), zero outside the image.

    Separable: :math:`A_H \\, x \\, A_W^\\top` with the matrices of :func:`blur_matrix`, which
    equals the 2-D convolution with the outer product of the kernel, zero-padded, applied
    ``config.blur_passes`` times.
    """
    h, w = x.shape[-2:]
    rows = blur_matrix(h, config, x.dtype, x.device)
    cols = rows if w == h else blur_matrix(w, config, x.dtype, x.device)
    return rows @ x @ cols.transpose(0, 1)


def _from_blurs(images: Tensor, visible: Tensor, blurred_xv: Tensor, blurred_v: Tensor) -> Tensor:
    """:math:`(G * XV) / (G * V)` where ``G * V`` reaches, else the visible region's mean colour."""
    predicted = blurred_xv / blurred_v.clamp_min(REACH_EPS)
    area = visible.sum((2, 3), keepdim=True)
    mean = torch.where(area > 0, (images * visible).sum((2, 3), keepdim=True) / area.clamp_min(REACH_EPS),
                       images.mean((2, 3), keepdim=True))
    return torch.where(blurred_v >= REACH_EPS, predicted, mean)


def inpaint(images: Tensor, visible: Tensor, config: IEMConfig) -> Tensor:
    """:math:`\\phi(X, V) = (G * (X V)) / (G * V)`: every pixel predicted from the visible ones.

    ``images`` (B, C, H, W), ``visible`` (B, 1, H, W) in [0, 1] (differentiable in both).
    Where :math:`G * V` < :data:`REACH_EPS` (no visible pixel within the blur's reach) the
    prediction is the mean colour of the visible pixels (of the whole image when none is).
    """
    both = blur(torch.cat([images * visible, visible], dim=1), config)
    return _from_blurs(images, visible, both[:, :-1], both[:, -1:])


def _region_mean(values: Tensor, region: Tensor) -> Tensor:
    """Per image, the mean of ``values`` (B, 1, H, W) over ``region`` (B, 1, H, W) weights."""
    return (values * region).sum((1, 2, 3)) / region.sum((1, 2, 3)).clamp_min(REACH_EPS)


def _variance(images: Tensor, region: Tensor) -> Tensor:
    """Per image, the colour variance inside ``region``, averaged over the channels: (B,)."""
    area = region.sum((2, 3), keepdim=True).clamp_min(REACH_EPS)
    mean = (images * region).sum((2, 3), keepdim=True) / area
    return (((images - mean) ** 2 * region).sum((2, 3), keepdim=True) / area).mean((1, 2, 3))


def inpainting_error(images: Tensor, mask: Tensor, config: IEMConfig, full: Optional[Tensor] = None) -> Tensor:
    """IEM's objective :math:`\\mathcal{L}(M)` (module docstring), one value per image: (B,).

    ``images`` (B, C, H, W) in [0, 1], ``mask`` (B, 1, H, W): the object :math:`M`.
    The blur is linear, so :math:`G * (X \\bar M) = G * X - G * (X M)` and
    :math:`G * \\bar M = G * 1 - G * M`: one blur of :math:`(XM, M)` per evaluation, and
    ``full`` = ``blur(cat([images, ones]))`` (computed here when not given) once per image.
    """
    if full is None:
        full = blur(torch.cat([images, torch.ones_like(images[:, :1])], dim=1), config)
    background = 1 - mask
    inside = blur(torch.cat([images * mask, mask], dim=1), config)
    outside = full - inside
    # Foreground predicted from the background, background from the foreground.
    from_bg = _from_blurs(images, background, outside[:, :-1], outside[:, -1:])
    from_fg = _from_blurs(images, mask, inside[:, :-1], inside[:, -1:])
    error_fg = (images - from_bg).abs().mean(1, keepdim=True)
    error_bg = (images - from_fg).abs().mean(1, keepdim=True)
    value = _region_mean(error_fg, mask) + _region_mean(error_bg, background)
    if config.variance_weight:
        value = value - config.variance_weight * (_variance(images, mask) + _variance(images, background))
    return value


def boundary(mask: Tensor, width: int = 1) -> Tensor:
    """Boolean (B, 1, H, W): pixels within ``width`` 4-neighbour steps of a pixel of the other label.

    ``mask`` (B, 1, H, W) binary. Both sides of the edge count (object pixels next to the
    background and background pixels next to the object); the image's own border is not
    an edge.
    """
    near = torch.zeros_like(mask, dtype=torch.bool)
    current = mask > 0.5
    # Dilate each label by `width` cross-shaped steps; a pixel near the other label is
    # one the other label's dilation reaches.
    grow_fg, grow_bg = current.clone(), ~current
    for _ in range(width):
        grow_fg, grow_bg = _cross_dilate(grow_fg), _cross_dilate(grow_bg)
    near |= (grow_fg & ~current) | (grow_bg & current)
    return near


def _cross_dilate(region: Tensor) -> Tensor:
    """One 4-neighbour dilation of a boolean (B, 1, H, W) region (nothing enters from outside)."""
    padded = F.pad(region.float(), (1, 1, 1, 1))
    grown = (padded[..., 1:-1, 1:-1] + padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1]
             + padded[..., 1:-1, :-2] + padded[..., 1:-1, 2:])
    return grown > 0


def majority_filter(mask: Tensor) -> Tensor:
    """3 x 3 majority vote on a binary (B, 1, H, W) mask: the label most of the neighbourhood has.

    Neighbourhoods count only pixels inside the image (9 inside, 6 on an edge, 4 in a
    corner); a tie (possible on edges and corners) keeps the pixel's label.
    """
    share = F.avg_pool2d(mask, 3, stride=1, padding=1, count_include_pad=False)
    return torch.where(share > 0.5, torch.ones_like(mask), torch.where(share < 0.5, torch.zeros_like(mask), mask))


def initial_mask(batch: int, height: int, width: int, margin: float, device=None) -> Tensor:
    """The centred square (rectangle) leaving ``margin`` of each side on every edge: (B, 1, H, W)."""
    my, mx = round(margin * height), round(margin * width)
    if height - 2 * my < 1 or width - 2 * mx < 1:
        raise ValueError(f"IEMConfig.margin={margin} leaves no initial square in a {height} x {width} image")
    mask = torch.zeros(batch, 1, height, width, device=device)
    mask[..., my:height - my, mx:width - mx] = 1
    return mask


def iem_step(images: Tensor, mask: Tensor, config: IEMConfig, full: Optional[Tensor] = None) -> Tensor:
    """One IEM update of the binary ``mask`` (B, 1, H, W) for ``images`` (B, C, H, W) in [0, 1].

    The objective's gradient at the mask; boundary pixels take the label its sign asks for;
    then the 3 x 3 majority filter. ``full``: see :func:`inpainting_error`.
    """
    with torch.enable_grad():
        relaxed = mask.detach().clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(inpainting_error(images, relaxed, config, full).sum(), relaxed)
    edge = boundary(mask, config.boundary_width)
    flipped = torch.where(edge & (gradient > 0), torch.ones_like(mask),
                          torch.where(edge & (gradient < 0), torch.zeros_like(mask), mask))
    return majority_filter(flipped)


def iem_masks(images: Tensor, config: Optional[IEMConfig] = None, init: Optional[Tensor] = None) -> Tensor:
    """IEM's object masks (B, 1, H, W), 0 / 1, for ``images`` (B, 3, H, W) in [-1, 1].

    ``config`` defaults to :meth:`IEMConfig.for_image_size` of the images' height; ``init``
    (B, 1, H, W) binary replaces the centred square as the starting mask. Every image is
    optimised independently (the objective is a sum over the batch, so its gradient for
    one image ignores the others); the batch runs as one tensor.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    b, _, h, w = images.shape
    config = config or IEMConfig.for_image_size(h)
    x = (images.detach().float() + 1) / 2  # [0, 1], the range the variance weight refers to
    if init is None:
        mask = initial_mask(b, h, w, config.margin, device=images.device)
    elif init.shape != (b, 1, h, w):
        raise ValueError(f"init must be (B, 1, H, W) = {(b, 1, h, w)}, got {tuple(init.shape)}")
    else:
        mask = (init > 0.5).float().to(images.device)
    full = blur(torch.cat([x, torch.ones_like(x[:, :1])], dim=1), config)
    for _ in range(config.n_steps):
        mask = iem_step(x, mask, config, full)
    return mask


def iem(images: Tensor, config: Optional[IEMConfig] = None, **overrides) -> Tensor:
    """The ``iem`` baseline: (B, 2, H, W) hard masks, region 0 the object :math:`M`, region 1 the rest.

    ``overrides`` replace fields of ``config`` (default: scaled to the image size), for
    example ``iem(images, n_steps=100)``.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    config = config or IEMConfig.for_image_size(images.shape[-2])
    if overrides:
        config = config.replace(**overrides)
    mask = iem_masks(images, config)
    return torch.cat([mask, 1 - mask], dim=1)
