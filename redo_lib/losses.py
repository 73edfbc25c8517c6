r"""The objectives (paper Eq. (3)-(4)) and the preprint's variants.

Discriminator (hinge loss), maximised by D:

.. math:: \mathcal{L}_D = \mathbb{E}[\min(0, -1 + D(I))] + \mathbb{E}[\min(0, -1 - D(I_{gen}))]

Generator side, minimised jointly by F, every G_k and delta:

.. math:: \mathcal{L}_G = -\mathbb{E}[D(I_{gen})]
          + \lambda_z\, \mathbb{E}\big[\|\delta(I_{gen}) - z\|_2^2\big]

with the squared norm taken as the *mean* of element-wise squares over the K n_z entries
of z (corrections 2 and 3 of the reproducibility study, Chmielewski-Anders et al. 2019).
:math:`\lambda_z` is the code's weight (``LossConfig.lambda_z``, the official ``wrecZ``).
Written with a *sum* of squares instead, the same loss needs the smaller weight
:math:`\lambda_\Sigma = \lambda_z / (K n_z)` (the report's own names: its lambda_z is
this lambda_Sigma, its delta this lambda_z); book/06_objectives.ipynb checks it
numerically.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "discriminator_hinge_loss",
    "generator_adversarial_loss",
    "information_loss",
    "min_area_loss",
    "binarization_loss",
]


def discriminator_hinge_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathbb{E}[\max(0, 1 - D(I))] + \mathbb{E}[\max(0, 1 + D(I_{gen}))]` (to minimise).

    The real and the fake scores may come from batches of different sizes (B reals,
    B*K fakes); each expectation is a mean over its own batch, as in the official code.
    """
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def generator_adversarial_loss(d_fake: torch.Tensor) -> torch.Tensor:
    r""":math:`-\mathbb{E}[D(I_{gen})]`: the generator side wants its fakes scored as real."""
    return -d_fake.mean()


def information_loss(z_pred: torch.Tensor, z: torch.Tensor, kind: str = "mean_squared") -> torch.Tensor:
    r"""Information conservation: how well delta recovers the codes, (B, K, nz) each.

    - ``"mean_squared"`` (the official code): :math:`\frac{1}{B K n_z}\sum (\hat z - z)^2`;
    - ``"l2_norm"`` (the preprint's Algorithm 1, line 6): the plain, unsquared norm
      :math:`\frac{1}{B K}\sum_{b,k} \|\hat z_{bk} - z_{bk}\|_2`.
    """
    if z_pred.shape != z.shape:
        raise ValueError(f"z_pred {tuple(z_pred.shape)} and z {tuple(z.shape)} differ in shape")
    if kind == "mean_squared":
        return (z_pred - z).pow(2).mean()
    if kind == "l2_norm":
        return (z_pred - z).norm(dim=-1).mean()
    raise ValueError(f"unknown information loss {kind!r}; choose 'mean_squared' or 'l2_norm'")


def min_area_loss(masks: torch.Tensor, min_area: float) -> torch.Tensor:
    r"""An **addition** (not ReDO): the minimum-area hinge of PerturbGAN (Bielski & Favaro,
    NeurIPS 2019), :math:`\frac{1}{BK}\sum_{b,k} \max(0, a_{min} - \bar M_{bk})`, where
    :math:`\bar M_{bk}` is the mean of mask k of image b (the share of the image region k
    holds). Zero while every region holds at least ``min_area`` of its image; below that it
    pushes every pixel of the region up by the same amount, against a region's collapse.
    It sees the soft masks: a region held as a faint haze (a fifth of the image at 0.2,
    nothing once thresholded at 0.5) escapes it; :func:`binarization_loss` removes the haze.

    ``masks``: (B, K, H, W) soft masks; returns a scalar.
    """
    if masks.dim() != 4:
        raise ValueError(f"masks must be (B, K, H, W), got shape {tuple(masks.shape)}")
    return F.relu(min_area - masks.mean(dim=(-2, -1))).mean()


def binarization_loss(masks: torch.Tensor) -> torch.Tensor:
    r"""An **addition** (not ReDO): PerturbGAN's binarisation term
    :math:`\frac{1}{BKHW}\sum \min(M, 1 - M)`, zero for hard masks and largest (0.5) for a
    pixel at 0.5. It pushes every pixel towards 0 or 1, so a region cannot sit in the
    image as a faint haze that the 0.5 threshold reads as empty.

    ``masks``: soft masks of any shape; returns a scalar.
    """
    return torch.minimum(masks, 1 - masks).mean()
