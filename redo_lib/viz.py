r"""Pictures of the generative process: masks, redrawings, swaps and learning curves.

Every function is plain: it takes tensors (or a model and tensors) and returns a
:class:`matplotlib.figure.Figure` or an image tensor, with no global state and no
``plt.show()`` (figures are built with :class:`~matplotlib.figure.Figure`, so they are
not registered with pyplot and need no closing). In a notebook, a returned figure is
displayed by ending a cell with it; :func:`figure_to_png` gives its PNG bytes.

The three steps of the paper (section 3) and where they appear:

1. *Composition*, :math:`M = F(I)`: :func:`mask_figure`, the mask columns of
   :func:`sample_grid` and :func:`redraw_figure`.
2. *Redrawing*, :math:`V_k = G_k(M_k, z_k)`: the redrawn columns, with codes fixed across
   rows so that the same :math:`z` gives the same colour and texture on every image.
3. *Assembling*, :math:`I^{(k)} = M_k \odot V_k + (1 - M_k) \odot I`: every redrawn
   panel is such a composite; :func:`swap_figure` assembles an object with *another*
   image's background, the independence assumption the method rests on.

Model-based functions switch the model to eval mode for the duration of the call (and
restore its mode afterwards) and run under :func:`torch.no_grad`, so they never update
spectral norm's power-iteration vectors.

Images are float tensors in [-1, 1], (B, 3, H, W); ground truth is (B, 1, H, W) 0/1
foreground or (B, C, H, W) one-hot with the background last.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import warnings
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from matplotlib.figure import Figure

from .generative import assemble
from .metrics import object_polarity

__all__ = [
    "PALETTE",
    "to_image",
    "show_images",
    "figure_to_png",
    "figure_to_array",
    "hard_mask",
    "truth_to_image",
    "labels_to_image",
    "overlay",
    "fixed_codes",
    "sample_grid",
    "redraw_figure",
    "mask_figure",
    "swap",
    "swap_figure",
    "load_metrics",
    "curves_figure",
    "compare_runs_figure",
    "error_map",
    "mask_errors_figure",
    "DIAGRAM_PARTS",
    "method_diagram",
]

Tensor = torch.Tensor
ArrayLike = Union[Tensor, np.ndarray]

#: Colours of regions / classes 0, 1, 2, ... in label pictures and overlays (RGB in [0, 1]).
#: Region 0 (the object, by convention) is red; the last region of K = 2 (background) blue.
PALETTE: Tuple[Tuple[float, float, float], ...] = (
    (0.90, 0.10, 0.10),
    (0.12, 0.35, 0.85),
    (0.15, 0.70, 0.20),
    (0.95, 0.75, 0.10),
    (0.60, 0.20, 0.75),
    (0.10, 0.75, 0.75),
    (0.95, 0.45, 0.70),
    (0.55, 0.35, 0.15),
)

# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Eval mode and no gradients for the duration of a ``with`` block, then restore the mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def _device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def _batch(images: Tensor) -> Tensor:
    """(3, H, W) or (B, 3, H, W) -> (B, 3, H, W) float."""
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise ValueError(f"images must be (B, 3, H, W) or (3, H, W), got {tuple(images.shape)}")
    return images.float()


def _numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def to_image(x: ArrayLike) -> np.ndarray:
    """A [-1, 1] image (3, H, W), (1, H, W) or (H, W) -> an H x W x 3 float array in [0, 1].

    The inverse of the data sets' scaling ``2 * pixel - 1``; values outside [-1, 1] (a
    generator's output can overshoot) are clipped.
    """
    a = _numpy(x)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        raise ValueError(f"expected an image (3, H, W), (1, H, W) or (H, W), got shape {a.shape}")
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return np.clip((a.transpose(1, 2, 0) + 1.0) / 2.0, 0.0, 1.0)


def _mask_image(m: ArrayLike) -> np.ndarray:
    """A [0, 1] mask (H, W) -> H x W x 3 grey picture (white = 1)."""
    a = np.clip(_numpy(m), 0.0, 1.0)
    return np.repeat(a[..., None], 3, axis=2)


def labels_to_image(labels: ArrayLike, n_labels: Optional[int] = None) -> np.ndarray:
    """Integer labels (H, W) -> H x W x 3 picture in [0, 1], label i coloured ``PALETTE[i]``.

    With ``n_labels == 2`` the two labels are drawn white (0, the object) and black (1),
    like a binary mask.
    """
    lab = _numpy(labels).astype(np.int64)
    if n_labels == 2:
        return _mask_image((lab == 0).astype(np.float32))
    colours = np.array(PALETTE, dtype=np.float32)
    return colours[lab % len(colours)]


def hard_mask(masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Soft masks (B, K, H, W) -> region index per pixel (B, H, W).

    K = 2: region 0 (the object) where :math:`M_0 \\ge` ``threshold`` (the official
    evaluation uses 0.5); K > 2: the arg-max region (``threshold`` unused).
    """
    if masks.shape[1] == 2:
        return (masks[:, 0] < threshold).long()
    return masks.argmax(dim=1)


def truth_to_image(truth: Tensor) -> Tensor:
    """Ground truth (B, 1, H, W) or one-hot (B, C, H, W) -> (B, 3, H, W) pictures in [0, 1].

    Binary truth: foreground white, background black. One-hot with C > 2: object class c
    coloured ``PALETTE[c]``, background (the last class) black.
    """
    if truth.dim() != 4:
        raise ValueError(f"ground truth must be (B, C, H, W), got {tuple(truth.shape)}")
    truth = truth.float()
    if truth.shape[1] == 1:
        return truth.clamp(0, 1).expand(-1, 3, -1, -1)
    if truth.shape[1] == 2:
        return truth[:, :1].clamp(0, 1).expand(-1, 3, -1, -1)
    classes = truth.argmax(dim=1)  # (B, H, W)
    colours = torch.tensor(PALETTE, dtype=torch.float32, device=truth.device)
    picture = colours[classes % len(PALETTE)]  # (B, H, W, 3)
    picture[classes == truth.shape[1] - 1] = 0.0
    return picture.permute(0, 3, 1, 2)


def overlay(image: ArrayLike, mask: ArrayLike, *, color: Optional[Sequence[float]] = None,
            alpha: float = 0.5) -> np.ndarray:
    """Tint ``image`` where ``mask`` is on: an H x W x 3 array in [0, 1].

    ``image`` is a [-1, 1] tensor (3, H, W) (or already an H x W x 3 array in [0, 1]).
    ``mask`` is either a float mask (H, W) in [0, 1] (hard or soft; the tint is
    proportional to it, in ``color``, red by default), or an integer label map (H, W),
    each label tinted with its ``PALETTE`` colour.
    """
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] == 3:
        picture = np.clip(image.astype(np.float32), 0, 1)
    else:
        picture = to_image(image)
    is_labels = (isinstance(mask, Tensor) and not mask.is_floating_point()) or (
        isinstance(mask, np.ndarray) and np.issubdtype(mask.dtype, np.integer))
    m = _numpy(mask)
    if m.shape != picture.shape[:2]:
        raise ValueError(f"mask {m.shape} and image {picture.shape[:2]} differ in size")
    if is_labels:
        tint = labels_to_image(m)
        weight = np.full(m.shape + (1,), alpha, dtype=np.float32)
    else:
        tint = np.broadcast_to(np.asarray(color if color is not None else PALETTE[0], dtype=np.float32),
                               picture.shape)
        weight = alpha * np.clip(m, 0, 1)[..., None]
    return (1 - weight) * picture + weight * tint


def figure_to_png(fig: Figure, dpi: Optional[float] = None) -> bytes:
    """PNG bytes of a figure, drawn by the Agg canvas (no pyplot, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # attach an Agg canvas (figures made with Figure() have none)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def figure_to_array(fig: Figure) -> np.ndarray:
    """The rendered pixels of a figure, an H x W x 4 uint8 array (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def _grid_axes(n_rows: int, n_cols: int, *, panel: float = 1.4, title_space: float = 0.3) -> Tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(panel * n_cols, (panel + title_space) * n_rows), layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def _show(ax, picture: np.ndarray, title: Optional[str] = None, **kwargs) -> None:
    ax.imshow(picture, interpolation="nearest", **kwargs)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def show_images(images: Union[Tensor, Sequence[ArrayLike]], *, ncols: int = 8,
                titles: Optional[Sequence[str]] = None, panel: float = 1.4) -> Figure:
    """A grid of images, ``ncols`` per row: a Figure with one axes per image.

    ``images``: a (N, 3, H, W) tensor in [-1, 1], or a list whose items are such (3, H, W)
    tensors, (H, W) masks in [0, 1] (drawn grey) or H x W x 3 arrays in [0, 1].
    """
    items = list(images)
    if not items:
        raise ValueError("show_images needs at least one image")
    ncols = max(1, min(ncols, len(items)))
    nrows = math.ceil(len(items) / ncols)
    fig, axes = _grid_axes(nrows, ncols, panel=panel, title_space=0.3 if titles else 0.0)
    for i, item in enumerate(items):
        if isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[-1] == 3:
            picture = item
        elif _numpy(item).ndim == 2:
            picture = _mask_image(item)
        else:
            picture = to_image(item)
        _show(axes.flat[i], picture, titles[i] if titles else None)
    # Remove the unused axes of the last row, so the axes count equals the image count.
    for ax in list(axes.flat)[len(items):]:
        fig.delaxes(ax)
    return fig


def fixed_codes(n_regions: int, n_z: int, nz: int, seed: int = 0) -> Tensor:
    """Codes :math:`z \\sim \\mathcal{N}(0, I)` drawn from ``seed``: (K, n_z, nz).

    ``codes[k, j]`` is the code :func:`redraw_figure` gives region k in its column j, the
    same on every row. Reproducible: a fixed ``torch.Generator``, not the global RNG.
    """
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(n_regions, n_z, nz, generator=generator)


# ---------------------------------------------------------------------------------------
# The training sample grid (official layout)
# ---------------------------------------------------------------------------------------


def sample_grid(model, images: Tensor, truth: Optional[Tensor], z_fixed: Tensor, *,
                z: Optional[Tensor] = None, seed: int = 0, padding: int = 2) -> Tensor:
    r"""The official training sample grid, as one (3, H', W') image tensor in [0, 1].

    Illustrates the whole generative process (steps 1-3, composition, redrawing and
    assembling, of paper section 3). For each region k one block of rows:
    a blank separator row (as in the official PNGs), then one row per image with the
    columns

    0. the input image I;
    1. its ground truth (blank where ``truth`` is None);
    2. the hard mask of region k (:math:`M_k \ge 0.5`, white);
    3. the soft mask :math:`M_k = F(I)_k`;
    4. the composite :math:`G_k(M_k, z_k) + (1 - M_k) \odot I` with the image's own code
       :math:`z` (``z[b, k]``): region k redrawn, every other region kept, as D sees it;
    5. ... the same composite with each fixed code ``z_fixed[j]`` in region k (the other
       regions keep ``z``): column 5 + j uses the same code on every row, so it shows what
       one code draws on different masks.

    ``images`` (B, 3, H, W) in [-1, 1]; ``truth`` (B, 1|C, H, W) or None; ``z_fixed``
    (n_z, nz); ``z`` (B, K, nz) per-image codes (default: drawn from ``seed``). Returns the
    grid of ``K * (B + 1)`` rows and ``n_z + 5`` columns made by
    :func:`torchvision.utils.make_grid` with ``padding``: shape
    ``(3, K(B+1)(H+p)+p, (n_z+5)(W+p)+p)``. Save it with ``torchvision.utils.save_image``.
    """
    from torchvision.utils import make_grid

    device = _device(model)
    images = _batch(images).to(device)
    b, _, h, w = images.shape
    k_regions, nz = model.n_regions, model.nz
    z_fixed = z_fixed.reshape(-1, nz).to(device, images.dtype)
    n_z = z_fixed.shape[0]
    if z is None:
        generator = torch.Generator().manual_seed(int(seed))
        z = torch.randn(b, k_regions, nz, generator=generator)
    z = z.reshape(b, k_regions, nz).to(device, images.dtype)

    # (K, B + 1, n_z + 5, 3, H, W), in [0, 1]; row 0 of each block stays black.
    out = images.new_zeros(k_regions, b + 1, n_z + 5, 3, h, w)
    with _evaluating(model):
        masks = model.mask_net(images)  # (B, K, H, W)
        composites = assemble(images, masks, model.generator(masks, z))  # (B, K, 3, H, W)
        out[:, 1:, 0] = (images.unsqueeze(0) + 1) / 2
        if truth is not None:
            out[:, 1:, 1] = truth_to_image(_batch(truth).to(device)).unsqueeze(0)
        soft = masks.transpose(0, 1).unsqueeze(2)  # (K, B, 1, H, W)
        out[:, 1:, 2] = (soft >= 0.5).float()
        out[:, 1:, 3] = soft
        out[:, 1:, 4] = (composites.transpose(0, 1) + 1) / 2
        for k in range(k_regions):
            for j in range(n_z):
                codes = z.clone()
                codes[:, k] = z_fixed[j]
                redrawn = model.generator(masks, codes, regions=[k])[:, k]
                out[k, 1:, 5 + j] = (redrawn + (1 - masks[:, k : k + 1]) * images + 1) / 2
    out = out.clamp(0, 1).reshape(-1, 3, h, w)
    return make_grid(out.cpu(), nrow=n_z + 5, padding=padding)


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


def _region_name(k: int, n_regions: int) -> str:
    if n_regions == 2:
        return ("object", "background")[k]
    return f"region {k}"


def redraw_figure(model, images: Tensor, truth: Optional[Tensor] = None, n_z: int = 4,
                  seed: int = 0, *, codes: Optional[Tensor] = None, panel: float = 1.3) -> Figure:
    r"""Redrawn objects and backgrounds with codes fixed across rows (the report's Figure 2).

    One row per image: the image, its ground truth (when ``truth`` is given), the predicted
    mask (region 0 >= 0.5 in white for K = 2; the arg-max regions in colour for K > 2),
    then for each region k a block of ``n_z`` columns: the *assembled* image (paper step
    3) :math:`G_k(M_k, z_{kj}) + (1 - M_k) \odot I` with region k *redrawn* (step 2) with
    code :math:`z_{kj}` and every other region kept. Column j of block k uses the same code
    on every row (``codes[k, j]``, default :func:`fixed_codes` ``(K, n_z, nz, seed)``), so a
    trained generator paints the same colour and texture into every image's mask: a
    check that the redrawing depends on z and the mask, not on the image.

    Returns a Figure of B rows and ``2 + has_truth + K * n_z`` columns.
    """
    device = _device(model)
    images = _batch(images).to(device)
    b = images.shape[0]
    k_regions, nz = model.n_regions, model.nz
    if codes is None:
        codes = fixed_codes(k_regions, n_z, nz, seed)
    codes = codes.to(device, images.dtype)
    n_z = codes.shape[1]
    has_truth = truth is not None
    first = 2 + int(has_truth)
    fig, axes = _grid_axes(b, first + k_regions * n_z, panel=panel)

    with _evaluating(model):
        masks = model.mask_net(images)
        labels = hard_mask(masks)
        truth_pictures = truth_to_image(_batch(truth).to(device)) if has_truth else None
        for k in range(k_regions):
            for j in range(n_z):
                z = torch.zeros(b, k_regions, nz, device=device, dtype=images.dtype)
                z[:, k] = codes[k, j]  # the same code on every row
                redrawn = model.generator(masks, z, regions=[k])[:, k]
                composite = redrawn + (1 - masks[:, k : k + 1]) * images
                for i in range(b):
                    title = f"{_region_name(k, k_regions)} $z_{{{j + 1}}}$" if i == 0 else None
                    _show(axes[i, first + k * n_z + j], to_image(composite[i]), title)
    for i in range(b):
        _show(axes[i, 0], to_image(images[i]), "image" if i == 0 else None)
        if has_truth:
            _show(axes[i, 1], truth_pictures[i].permute(1, 2, 0).cpu().numpy(), "truth" if i == 0 else None)
        _show(axes[i, first - 1], labels_to_image(labels[i], k_regions), "mask" if i == 0 else None)
    return fig


def mask_figure(images: Tensor, masks: Tensor, truth: Optional[Tensor] = None,
                threshold: float = 0.5, *, panel: float = 1.4) -> Figure:
    r"""The composition step :math:`M = F(I)` (paper section 3.1) for a batch of images.

    One row per image: the image, each region's soft mask :math:`M_k` (white = 1), the
    hard mask (:func:`hard_mask` at ``threshold``) drawn over the image (region 0 red for
    K = 2; every region in its ``PALETTE`` colour for K > 2), and the ground truth drawn
    over the image when ``truth`` is given. ``images`` (B, 3, H, W) in [-1, 1], ``masks``
    (B, K, H, W). Returns a Figure of B rows and ``1 + K + 1 + has_truth`` columns.
    """
    images = _batch(images)
    masks = masks if masks.dim() == 4 else masks.unsqueeze(0)
    b, k_regions = masks.shape[:2]
    if images.shape[0] != b or images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} do not match")
    has_truth = truth is not None
    fig, axes = _grid_axes(b, 2 + k_regions + int(has_truth), panel=panel)
    labels = hard_mask(masks, threshold)
    if has_truth:
        truth_labels = _truth_labels(_batch(truth))
    for i in range(b):
        top = i == 0
        _show(axes[i, 0], to_image(images[i]), "image" if top else None)
        for k in range(k_regions):
            _show(axes[i, 1 + k], _mask_image(masks[i, k]), f"$M_{k}$ ({_region_name(k, k_regions)})" if top else None)
        hard = (labels[i] == 0).float() if k_regions == 2 else labels[i]
        _show(axes[i, 1 + k_regions], overlay(images[i], hard),
              f"hard mask (t={threshold:g})" if top and k_regions == 2 else ("hard mask" if top else None))
        if has_truth:
            t = truth_labels[i]
            _show(axes[i, 2 + k_regions], overlay(images[i], (t == 0).float() if truth.shape[1] <= 2 else t),
                  "truth" if top else None)
    return fig


def _truth_labels(truth: Tensor) -> Tensor:
    """(B, 1, H, W) binary -> (B, H, W) with 0 = object, 1 = background; one-hot -> argmax."""
    if truth.shape[1] == 1:
        return (truth[:, 0] < 0.5).long()
    return truth.argmax(dim=1)


def swap(model, image_a: Tensor, image_b: Tensor, region: int = 0, *,
         temperature: Optional[float] = None) -> Dict[str, Tensor]:
    r"""Exchange region ``region`` between two images by the assembling step alone.

    .. math:: I_{a \to b} = M^a_k \odot I_a + (1 - M^a_k) \odot I_b, \qquad
              I_{b \to a} = M^b_k \odot I_b + (1 - M^b_k) \odot I_a

    (the assembling step 3 with the *other* image's region in place of the generator's
    redraw). With the object region, A's object is pasted on B's background. Returns the
    soft masks ``mask_a``, ``mask_b`` (H, W) and composites ``a_on_b``, ``b_on_a`` (3, H, W).
    """
    device = _device(model)
    a, b = _batch(image_a).to(device), _batch(image_b).to(device)
    if not 0 <= region < model.n_regions:
        raise ValueError(f"region must be in [0, {model.n_regions}), got {region}")
    with _evaluating(model):
        masks = model.mask_net(torch.cat([a, b]), temperature=temperature)[:, region : region + 1]
    ma, mb = masks[:1], masks[1:]
    return {
        "mask_a": ma[0, 0],
        "mask_b": mb[0, 0],
        "a_on_b": (ma * a + (1 - ma) * b)[0],
        "b_on_a": (mb * b + (1 - mb) * a)[0],
    }


def swap_figure(model, image_a: Tensor, image_b: Tensor, region: int = 0, *,
                temperature: Optional[float] = None, panel: float = 1.6) -> Figure:
    r"""The independence assumption, seen by swapping a region between two images.

    ReDO assumes the object and the background are drawn independently (paper section
    3.1), so an object pasted on another image's background should still look like a
    plausible image. Using the assembling step (step 3) with image B in place of
    the redraw, :func:`swap` puts A's region ``region`` (its pixels under :math:`M^a_k`)
    onto B's other regions, and vice versa. A Figure of 2 rows x 3 columns: for A then B,
    the image, its soft mask :math:`M_k` and its region pasted onto the other image.
    """
    out = swap(model, image_a, image_b, region, temperature=temperature)
    name = _region_name(region, model.n_regions)
    fig, axes = _grid_axes(2, 3, panel=panel)
    _show(axes[0, 0], to_image(_batch(image_a)[0]), "image A")
    _show(axes[0, 1], _mask_image(out["mask_a"]), f"$M_{region}$ of A")
    _show(axes[0, 2], to_image(out["a_on_b"]), f"A's {name} on B")
    _show(axes[1, 0], to_image(_batch(image_b)[0]), "image B")
    _show(axes[1, 1], _mask_image(out["mask_b"]), f"$M_{region}$ of B")
    _show(axes[1, 2], to_image(out["b_on_a"]), f"B's {name} on A")
    return fig


# ---------------------------------------------------------------------------------------
# Learning curves
# ---------------------------------------------------------------------------------------


def _matching_series(record_keys: Iterable[str], key: str) -> List[str]:
    """Record keys that hold metric ``key``: ``key`` itself or ``<prefix>/key``, ``<prefix>_key``.

    The trainer's running maximum ``best_<key>`` is bookkeeping, not a curve: left out.
    """
    return sorted(k for k in record_keys
                  if (k == key or k.endswith("/" + key) or k.endswith("_" + key)) and not k.startswith("best_"))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _metric_values(record: Dict, key: str, top_label: str) -> Dict[str, float]:
    """Every value of metric ``key`` in one record, by series name.

    Top-level ``key`` -> ``"<split>/key"`` when the record has a ``"split"`` field, else
    ``"<top_label>/key"``; prefixed keys (``train/iou``, ``val_iou``) keep their name; a
    nested dict ``{"train": {"iou": ...}}`` gives ``"train/iou"``. ``None`` and
    non-finite values are left out.
    """
    out: Dict[str, float] = {}
    for name in _matching_series(record, key):
        if _is_number(record[name]):
            if name == key:
                prefix = record.get("split", top_label)
                out[f"{prefix}/{key}" if prefix else key] = float(record[name])
            else:
                out[name] = float(record[name])
    for group, values in record.items():
        if isinstance(values, dict) and _is_number(values.get(key)):
            out[f"{group}/{key}"] = float(values[key])
    return out


def load_metrics(path: Union[str, "os.PathLike[str]"], keys: Sequence[str] = ("iou", "accuracy"),
                 x: str = "step") -> List[Dict]:
    """Read a ``metrics.jsonl`` file (one JSON object per line) into a list of dicts.

    Keeps the records that have ``x`` and a number for at least one of ``keys`` (at the
    top level, prefixed as in ``val/iou`` or ``val_iou``, or in a nested dict such as the
    trainer's ``"train": {"iou": ...}``). Event lines (``{"event": "start", ...}``,
    restarts, resumptions) and records whose scores are all ``None`` are skipped, and so
    are blank lines and a line that is not valid JSON (a run killed while writing; a
    warning says which line).
    """
    records: List[Dict] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                warnings.warn(f"{os.fspath(path)} line {number} is not valid JSON; skipped", stacklevel=2)
                continue
            if not isinstance(record, dict) or x not in record or "event" in record:
                continue
            if any(_metric_values(record, key, "") for key in keys):
                records.append(record)
    return records


def curves_figure(records: Sequence[Dict], keys: Sequence[str] = ("iou", "accuracy"), *,
                  x: str = "step", reference: Optional[Dict[str, float]] = None, top_label: str = "val",
                  panel: Tuple[float, float] = (4.0, 3.0)) -> Figure:
    """Learning curves from ``metrics.jsonl`` records: one axes per metric in ``keys``.

    Each axes plots, against ``x``, every series holding that metric (see
    :func:`load_metrics`): the trainer's records give ``val/iou`` (its top-level scores
    are the validation set's, hence ``top_label="val"``) and ``train/iou`` (its nested
    ``"train"`` dict); records with a ``"split"`` field give one line per split. When
    the records span several automatic restarts (a ``"restart"`` counter that changes),
    each restart is its own line. ``reference`` draws dashed horizontal lines, e.g.
    ``{"iou": 0.764}`` for the paper's Flowers result (the style of the reproducibility
    report's Figures 1 and 3).
    """
    if not keys:
        raise ValueError("curves_figure needs at least one key")
    restarts = {record["restart"] for record in records if x in record and record.get("restart") is not None}
    fig = Figure(figsize=(panel[0] * len(keys), panel[1]), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(keys), squeeze=False)[0])
    for ax, key in zip(axes, keys):
        series: Dict[str, Tuple[List[float], List[float]]] = {}
        for record in records:
            if x not in record or "event" in record:
                continue
            for label, value in _metric_values(record, key, top_label).items():
                if len(restarts) > 1 and record.get("restart") is not None:
                    label = f"{label} (restart {record.get('restart')})"
                xs, ys = series.setdefault(label, ([], []))
                xs.append(record[x])
                ys.append(value)
        for label, (xs, ys) in sorted(series.items()):
            order = np.argsort(xs, kind="stable")
            ax.plot(np.asarray(xs)[order], np.asarray(ys)[order], marker=".", label=label)
        if reference and key in reference:
            ax.axhline(reference[key], linestyle="--", color="grey", label=f"reference {reference[key]:.3f}")
        ax.set_xlabel(x)
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if series or (reference and key in reference):
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no '{key}' values", ha="center", va="center", transform=ax.transAxes)
    return fig


#: validation scores of the trainer's records, drawn on [0, 1]
_SCORES = ("iou", "accuracy", "iou_dataset", "accuracy_dataset", "min_region_size")


def compare_runs_figure(runs: "Dict[str, Sequence[Dict]]", key: str = "iou", *,
                        baselines: Optional[Dict[str, float]] = None, title: Optional[str] = None,
                        x: str = "minutes", ax=None, panel: Tuple[float, float] = (5.0, 3.2)) -> Figure:
    """Several runs' validation ``key`` (or training loss: ``d_loss``, ...) against minutes of training, on one axes.

    ``runs`` maps a label to the records of :func:`load_metrics` (each needs ``seconds``,
    written by the trainer at every evaluation). Runs that share a label prefix before
    ``" seed"`` share a colour, so the seeds of one setting read as one family, and are told
    apart by their line style (solid, dash-dot, dotted; dashed lines are the baselines).
    ``baselines`` draws dashed horizontal lines (e.g. colour k-means on the same split).
    ``x`` is ``"minutes"`` (wall-clock, from ``seconds``) or ``"iteration"``.
    """
    if x not in ("minutes", "iteration"):
        raise ValueError(f"x={x!r}: choose 'minutes' or 'iteration'")
    if ax is None:
        fig = Figure(figsize=panel, layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    colours: Dict[str, str] = {}
    members: Dict[str, int] = {}  # runs drawn so far per family
    palette = [f"C{i}" for i in range(10)]
    seed_styles = ("-", "-.", ":")
    for label, records in runs.items():
        field = "seconds" if x == "minutes" else "iteration"
        scale = 60.0 if x == "minutes" else 1.0
        points = [(r[field] / scale, r[key]) for r in records
                  if "event" not in r and r.get(field) is not None and _is_number(r.get(key))]
        if not points:
            continue
        family = label.split(" seed")[0]
        colour = colours.setdefault(family, palette[len(colours) % len(palette)])
        style = seed_styles[members.get(family, 0) % len(seed_styles)]
        members[family] = members.get(family, 0) + 1
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker=".", color=colour, linestyle=style, label=label, alpha=0.85)
    for i, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, linestyle="--", color="grey", alpha=0.4 + 0.6 * i / max(len(baselines) - 1, 1),
                   linewidth=1)
        ax.text(0.0, value, f" {name} {value:.2f}", fontsize=7, va="bottom", color="dimgrey",
                transform=ax.get_yaxis_transform())
    ax.set_xlabel("minutes of training (one CPU thread)" if x == "minutes" else "iterations")
    if key.split("/")[-1] in _SCORES:  # validation scores lie in [0, 1]
        ax.set_ylabel(f"validation {key}")
        ax.set_ylim(0, 1)
    else:  # a training loss, averaged since the previous evaluation
        ax.set_ylabel(f"{key} (training average)")
    ax.grid(alpha=0.3)
    if any(not line.get_label().startswith("_") for line in ax.get_lines()):
        ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title)
    return fig


# ---------------------------------------------------------------------------------------
# The method as a diagram
# ---------------------------------------------------------------------------------------

#: The parts :func:`method_diagram` can highlight, and the boxes (their ``gid``) of each.
DIAGRAM_PARTS: Dict[str, Tuple[str, ...]] = {
    "F": ("F",),
    "G": ("G",),
    "D": ("D",),
    "delta": ("delta",),
    "losses": ("adversarial loss", "information loss"),
}

_DIAGRAM_FILL = {"data": "#eeeeee", "network": "#d6e6f5", "loss": "#fbe3c8"}
_DIAGRAM_STRONG = "#c62828"
_DIAGRAM_LINE = "#444444"


def _diagram_box(ax, gid: str, centre: Tuple[float, float], width: float, text: str, kind: str,
                 strong: bool, height: float = 1.15) -> Dict[str, float]:
    from matplotlib.patches import FancyBboxPatch

    x, y = centre
    box = FancyBboxPatch((x - width / 2, y - height / 2), width, height,
                         boxstyle="round,pad=0,rounding_size=0.18",
                         facecolor=_DIAGRAM_STRONG if strong else _DIAGRAM_FILL[kind],
                         edgecolor=_DIAGRAM_STRONG if strong else _DIAGRAM_LINE,
                         linewidth=2.2 if strong else 1.0, zorder=2)
    box.set_gid(gid)
    ax.add_patch(box)
    ax.text(x, y, text, ha="center", va="center", fontsize=10.5, zorder=3, linespacing=1.5,
            color="white" if strong else "black")
    return {"x": x, "y": y, "left": x - width / 2, "right": x + width / 2,
            "top": y + height / 2, "bottom": y - height / 2}


def _diagram_arrow(ax, points: Sequence[Tuple[float, float]], label: Optional[str] = None,
                   label_at: Optional[Tuple[float, float]] = None, dashed: bool = False) -> None:
    """A polyline through ``points`` ending in an arrow head; ``label`` written at ``label_at``."""
    from matplotlib.patches import FancyArrowPatch

    style = dict(color=_DIAGRAM_LINE, linewidth=1.2, linestyle=(0, (4, 2)) if dashed else "-")
    for start, end in zip(points[:-2], points[1:-1]):
        ax.plot([start[0], end[0]], [start[1], end[1]], zorder=1, solid_capstyle="butt", **style)
    ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=12,
                                 shrinkA=0, shrinkB=1, zorder=1, **style))
    if label:
        ax.text(*label_at, label, ha="center", va="bottom", fontsize=9.5, color=_DIAGRAM_LINE, zorder=3)


def method_diagram(ax=None, highlight: Union[None, str, Sequence[str]] = None) -> Figure:
    r"""The whole of ReDO in one picture, drawn with boxes and arrows (matplotlib only).

    Image :math:`I` -> mask network :math:`F` -> :math:`K` soft masks; for each region
    :math:`k`, a code :math:`z_k \sim \mathcal{N}(0, I)` and the mask :math:`M_k` go into
    the generator :math:`G_k`, whose output is assembled with the input into the composite
    :math:`I^{(k)} = M_k \odot G_k + (1 - M_k) \odot I`. The discriminator :math:`D` scores
    real images and composites (hinge loss for :math:`D`, adversarial loss for the
    generator side); the information network :math:`\delta` reads the fully generated image
    :math:`\sum_k G_k(M_k, z_k)` and must recover :math:`z` (information loss
    :math:`\lambda_z\, \mathrm{mean}((\delta - z)^2)`).

    ``highlight``: one of ``"F"``, ``"G"``, ``"D"``, ``"delta"``, ``"losses"`` (or a
    sequence of them), drawn in a strong colour so that a chapter can point at the part it
    explains. ``ax``: draw into these axes (their figure is returned) instead of a new
    figure. Every box is a patch whose ``gid`` names it (:data:`DIAGRAM_PARTS` lists the
    highlightable ones).
    """
    names = [] if highlight is None else [highlight] if isinstance(highlight, str) else list(highlight)
    unknown = [name for name in names if name not in DIAGRAM_PARTS]
    if unknown:
        raise ValueError(f"method_diagram: unknown part {unknown[0]!r} to highlight; "
                         f"valid: {', '.join(DIAGRAM_PARTS)}")
    strong = {gid for name in names for gid in DIAGRAM_PARTS[name]}
    if ax is None:
        fig = Figure(figsize=(14.0, 4.6), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    ax.set_axis_off()

    top, bottom = 4.9, 1.6
    gap = 1.0
    widths = {"I": 1.5, "F": 2.0, "M": 2.0, "G": 2.1, "composite": 3.3, "D": 2.0, "loss": 3.1}
    x, centres = 0.0, {}
    for gid, width in widths.items():
        centres[gid] = x + width / 2
        x += width + gap

    def box(gid, column, y, text, kind, height=1.15):
        return _diagram_box(ax, gid, (centres[column], y), widths[column], text, kind, gid in strong, height)

    image = box("I", "I", top, "image\n$I$", "data")
    mask_net = box("F", "F", top, "mask network\n$F$", "network")
    masks = box("M", "M", top, "$K$ soft masks\n$M_1, \\dots, M_K$", "data")
    generator = box("G", "G", top, "generator\n$G_k(M_k, z_k)$", "network")
    composite = box("composite", "composite", top,
                    "composite $I^{(k)}$\n$M_k \\odot G_k + (1 - M_k) \\odot I$", "data")
    disc = box("D", "D", top, "discriminator\n$D$", "network")
    adversarial = box("adversarial loss", "loss", top,
                      "hinge loss for $D$\nadversarial loss for $F, G$", "loss")
    code = box("z", "G", bottom, "code\n$z_k \\sim \\mathcal{N}(0, I)$", "data")
    full = box("full", "composite", bottom, "fully generated image\n$\\Sigma_k\\, G_k(M_k, z_k)$", "data")
    info_net = box("delta", "D", bottom, "information\nnetwork $\\delta$", "network")
    information = box("information loss", "loss", bottom,
                      "information loss\n$\\lambda_z\\, \\mathrm{mean}((\\delta - z)^2)$", "loss")
    ax.set_xlim(-0.1, x - gap + 0.1)
    ax.set_ylim(-0.1, 8.1)

    # one region's redraw happens K times: a dashed frame around it
    from matplotlib.patches import FancyBboxPatch

    frame = FancyBboxPatch((generator["left"] - 0.15, top - 0.9), composite["right"] - generator["left"] + 0.3,
                           2.0, boxstyle="round,pad=0,rounding_size=0.25", facecolor="none",
                           edgecolor="#888888", linestyle=(0, (3, 2)), linewidth=1.0, zorder=0)
    frame.set_gid("region frame")
    ax.add_patch(frame)
    ax.text(generator["left"] - 0.05, top + 0.85, "for each region $k = 1, \\dots, K$", fontsize=9.5,
            ha="left", va="center", color="#555555", zorder=3)

    def right_to_left(a, b, label=None):
        _diagram_arrow(ax, [(a["right"], a["y"]), (b["left"], b["y"])], label,
                       ((a["right"] + b["left"]) / 2, a["y"] + 0.08))

    right_to_left(image, mask_net)
    right_to_left(mask_net, masks)
    right_to_left(masks, generator, "$M_k$")
    right_to_left(generator, composite)
    right_to_left(composite, disc, "fake")
    right_to_left(disc, adversarial, "score")
    right_to_left(full, info_net)
    right_to_left(info_net, information, "$\\hat z$")
    _diagram_arrow(ax, [(code["x"], code["top"]), (generator["x"], generator["bottom"])], "$z_k$",
                   (code["x"] + 0.3, (code["top"] + generator["bottom"]) / 2 - 0.15))
    _diagram_arrow(ax, [(generator["right"] - 0.2, generator["bottom"]), (full["left"] + 0.15, full["top"])])
    # the kept pixels of I go into every composite; the real I is D's other input
    _diagram_arrow(ax, [(image["x"] + 0.35, image["top"]), (image["x"] + 0.35, 6.65),
                        (composite["x"], 6.65), (composite["x"], composite["top"])],
                   "kept pixels $(1 - M_k) \\odot I$", (composite["x"] - 2.6, 6.7))
    _diagram_arrow(ax, [(image["x"] - 0.35, image["top"]), (image["x"] - 0.35, 7.45),
                        (disc["x"], 7.45), (disc["x"], disc["top"])],
                   "real image $I$", (disc["x"] - 2.0, 7.5))
    # z is the target of the information loss
    _diagram_arrow(ax, [(code["x"], code["bottom"]), (code["x"], 0.2), (information["x"], 0.2),
                        (information["x"], information["bottom"])],
                   "target $z$", ((code["x"] + information["x"]) / 2, 0.25), dashed=True)
    return fig


def error_map(predicted: Tensor, truth: Tensor) -> np.ndarray:
    """(H, W, 3) picture of a binary prediction against the truth (both (H, W) bool).

    Green: object pixels found; red: background called object (false positives, e.g. a
    ring around the object); blue: object pixels missed; black: background, correctly.
    """
    p, t = _numpy(predicted).astype(bool), _numpy(truth).astype(bool)
    out = np.zeros(p.shape + (3,), dtype=np.float32)
    out[..., 0] = p & ~t
    out[..., 1] = p & t
    out[..., 2] = ~p & t
    return out


def mask_errors_figure(images: Tensor, masks: Tensor, truth: Tensor, *, panel: float = 1.4) -> Figure:
    """K = 2: where a model's object mask is wrong, one column per image.

    Rows: the image, the soft mask of the region playing the object (per image, the
    polarity with the better IoU, as the official protocol scores it), and
    :func:`error_map` of the mask thresholded at 0.5, titled with the image's IoU.
    ``images`` (B, 3, H, W), ``masks`` (B, 2, H, W), ``truth`` (B, 1, H, W).
    """
    images, masks, truth = _batch(images), masks.detach().cpu(), _batch(truth).cpu()
    if masks.shape[1] != 2:
        raise ValueError(f"mask_errors_figure needs K = 2 masks, got {tuple(masks.shape)}")
    t = truth[:, 0] > 0.5
    soft, iou, _ = object_polarity(masks[:, 0], t)
    b = images.shape[0]
    fig, axes = _grid_axes(3, b, panel=panel)
    for i in range(b):
        _show(axes[0, i], to_image(images[i]), "image" if i == 0 else None)
        _show(axes[1, i], _mask_image(soft[i]), "soft mask" if i == 0 else None)
        _show(axes[2, i], error_map(soft[i] >= 0.5, t[i]), f"IoU {iou[i]:.2f}")
    return fig
