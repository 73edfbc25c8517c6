"""Held-out synthetic data sets in the layout of the ``folder`` data set (flat and textured).

The presets are tuned on the built-in synthetic ladder (:mod:`redo_lib.data.synthetic`).
The two sets written here check that those settings carry over to images drawn by other
code: this script imports nothing from ``redo_lib`` (numpy, PIL and tqdm only), and its
shapes, colours and textures follow rules of its own.

* ``flat``: one flat-coloured object on a faint linear gradient between two colours, plus
  Gaussian pixel noise (std 0.02 on [0, 1]). The objects are ellipses, convex polygons
  (3-7 vertices, thin ones included) and unions of 2-3 overlapping ellipses, in equal
  shares (the shape cycles with the image's index); each covers 10-28 % of the image and
  about a quarter of them touch or cross the image border. The object's colour is at
  least 0.4 (Euclidean RGB distance on [0, 1]) from every colour of the background's
  gradient (before noise), so colour alone separates it: this is the flat level, where a
  colour k-means does well.
* ``textured``: one smooth blob (a thresholded low-frequency random field around a random
  centre, holes filled, one connected piece) covering 15-40 % of the image, filled with
  stripes (period 3-8 px at 32 px, random orientation), a checkerboard (cells of 2-6 px
  at 32 px, rotated in half the images) or smooth noise (a low-pass random field mapped
  between two colours), in equal shares. The background is a linear gradient between two
  colours plus a weak low-frequency texture; the whole image gets Gaussian pixel noise
  (std 0.06). The object's two colours and the background's two colours are drawn from
  the same palette around one random scene colour, so colour alone does not separate
  object and background: a colour k-means should do poorly here.

Texture sizes are given at 32 px and scale with ``--size``; noise levels do not.

Layout (what :class:`redo_lib.data.folder.ImageFolder` reads)::

    DIR/images/<stem>.png     RGB, --size x --size
    DIR/masks/<stem>.png      8-bit L, object 255, background 0
    DIR/splits/train.txt val.txt test.txt   one stem per line (train_00000, ...)
    DIR/objects.csv           stem, split, shape or texture, area fraction, touches border

Each image has its own random generator, ``numpy.random.default_rng([seed, kind, split,
index])``, so the same ``--seed`` gives byte-identical PNGs and changing one split's count
does not change the images of the others. The set is written to ``DIR.tmp-<pid>`` and
renamed to DIR at the end (an interrupted run leaves no DIR that looks complete); an
existing DIR is refused (exit status 2) unless ``--force``.

Usage::

    python benchmarks/folder_sets.py --kind flat --out data/folder-flat
    python benchmarks/folder_sets.py --kind textured --out data/folder-textured
        [--size 32] [--train 3000] [--val 300] [--test 500] [--seed 0] [--force]

    redo train --preset synthetic-flat --dataset folder --data-root data/folder-flat \\
        --image-size 32 --steps 10000 --out runs/folder-flat
    redo evaluate --checkpoint runs/folder-flat/best.pt --dataset folder \\
        --data-root data/folder-flat --split test
    redo evaluate --baseline kmeans --dataset folder --data-root data/folder-flat \\
        --image-size 32 --split test

(the same with ``folder-textured``; ``--image-size 32`` is needed for a baseline on a
``folder`` data set, whose default is 128). The script prints one summary line: the counts,
the mean object area fraction per split and the fraction of objects touching the border.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

__all__ = [
    "KINDS",
    "SPLITS",
    "FLAT_SHAPES",
    "TEXTURES",
    "AREA_RANGES",
    "render_flat",
    "render_textured",
    "image_rng",
    "write_folder_set",
    "summary_line",
    "main",
]

KINDS = ("flat", "textured")
SPLITS = ("train", "val", "test")
FLAT_SHAPES = ("ellipse", "polygon", "ellipses")
TEXTURES = ("stripes", "checkerboard", "noise")
#: the object's area as a fraction of the image, inclusive bounds
AREA_RANGES: Dict[str, Tuple[float, float]] = {"flat": (0.10, 0.28), "textured": (0.15, 0.40)}
#: fraction of ``flat`` objects placed so that they touch the image border
FLAT_BORDER_SHARE = 0.25
FLAT_NOISE = 0.02
TEXTURED_NOISE = 0.06
#: minimum Euclidean RGB distance (on [0, 1]) of a flat object's colour from every background colour
FLAT_MIN_COLOUR_DISTANCE = 0.4

Array = np.ndarray


# ----------------------------------------------------------------------------- helpers


def image_rng(seed: int, kind: str, split: str, index: int) -> np.random.Generator:
    """The random generator of one image: independent of every other image and split."""
    return np.random.default_rng([int(seed), KINDS.index(kind), SPLITS.index(split), int(index)])


def _grid(size: int) -> Tuple[Array, Array]:
    """Pixel centres in [0, 1]: (x, y), each (size, size); y grows downwards."""
    c = (np.arange(size, dtype=np.float64) + 0.5) / size
    return np.meshgrid(c, c, indexing="xy")


def _touches_border(mask: Array) -> bool:
    """Whether any object pixel lies in the outermost row or column."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def _smooth_field(rng: np.random.Generator, size: int, cells: float) -> Array:
    """A low-frequency Gaussian random field (size, size) with zero mean and unit std.

    Random normals on a grid of about ``cells`` x ``cells`` control points (spaced 1 / cells
    over the image, with a margin) are blended by Gaussian kernels as wide as the spacing.
    """
    n = int(np.ceil(cells)) + 3
    spacing = 1.0 / cells
    centres = (np.arange(n) - 1.5) * spacing + (1.0 - (n - 3) * spacing) / 2
    pixels = (np.arange(size) + 0.5) / size
    weights = np.exp(-0.5 * ((pixels[:, None] - centres[None, :]) / spacing) ** 2)
    field = weights @ rng.standard_normal((n, n)) @ weights.T
    field -= field.mean()
    return field / max(float(field.std()), 1e-12)


def _gradient(rng: np.random.Generator, size: int, c0: Array, c1: Array) -> Array:
    """A linear gradient from ``c0`` to ``c1`` along a random direction: (size, size, 3)."""
    x, y = _grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * (x - 0.5) + np.sin(angle) * (y - 0.5)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-12)
    return c0[None, None, :] + t[..., None] * (c1 - c0)[None, None, :]


def _to_uint8(image: Array) -> Array:
    """[0, 1] floats to uint8 RGB (clipped, rounded)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _dilate(region: Array) -> Array:
    """4-connected binary dilation by one pixel (no wrap-around)."""
    out = region.copy()
    out[1:] |= region[:-1]
    out[:-1] |= region[1:]
    out[:, 1:] |= region[:, :-1]
    out[:, :-1] |= region[:, 1:]
    return out


def _flood(seed: Array, allowed: Array) -> Array:
    """The pixels of ``allowed`` 4-connected to ``seed`` (by repeated constrained dilation)."""
    region = seed & allowed
    while True:
        grown = _dilate(region) & allowed
        if np.array_equal(grown, region):
            return region
        region = grown


# ----------------------------------------------------------------------------- flat


def _ellipse(x: Array, y: Array, cx: float, cy: float, a: float, b: float, angle: float) -> Array:
    dx, dy = x - cx, y - cy
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


Drawer = Callable[[Array, Array, float, float, float], Array]


def _shape_drawer(rng: np.random.Generator, shape: str) -> Drawer:
    """Random parameters of one flat shape at unit scale, as ``draw(x, y, cx, cy, scale) -> mask``."""
    if shape == "ellipse":
        ratio = np.exp(rng.uniform(0.0, np.log(3.0)))
        a, b, angle = np.sqrt(ratio), 1.0 / np.sqrt(ratio), rng.uniform(0, np.pi)
        return lambda x, y, cx, cy, s: _ellipse(x, y, cx, cy, s * a, s * b, angle)
    if shape == "polygon":
        n = int(rng.integers(3, 8))
        while True:  # vertices on a circle in angular order (no gap over 180 degrees) ...
            theta = np.sort(rng.uniform(0, 2 * np.pi, n))
            gaps = np.diff(np.concatenate([theta, theta[:1] + 2 * np.pi]))
            if gaps.max() < 0.9 * np.pi:
                break
        ratio = np.exp(rng.uniform(0.0, np.log(5.0)))  # ... then stretched: thin ones up to 5:1
        px, py = np.cos(theta) * np.sqrt(ratio), np.sin(theta) / np.sqrt(ratio)
        rot = rng.uniform(0, np.pi)
        vx = np.cos(rot) * px - np.sin(rot) * py
        vy = np.sin(rot) * px + np.cos(rot) * py

        def polygon(x: Array, y: Array, cx: float, cy: float, s: float) -> Array:
            inside = np.ones(x.shape, dtype=bool)
            for i in range(n):  # counter-clockwise vertices: inside is left of every edge
                x0, y0 = cx + s * vx[i], cy + s * vy[i]
                x1, y1 = cx + s * vx[(i + 1) % n], cy + s * vy[(i + 1) % n]
                inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0
            return inside

        return polygon
    if shape == "ellipses":
        parts = []
        ox = oy = 0.0
        for i in range(int(rng.integers(2, 4))):
            ratio = np.exp(rng.uniform(0.0, np.log(2.5)))
            a, b = np.sqrt(ratio), 1.0 / np.sqrt(ratio)
            if i:  # the next centre lies inside the previous ellipse's reach: they overlap
                step = rng.uniform(0.5, 0.9) * parts[-1][2]
                direction = rng.uniform(0, 2 * np.pi)
                ox, oy = ox + step * np.cos(direction), oy + step * np.sin(direction)
            parts.append((ox, oy, a, b, rng.uniform(0, np.pi)))
        mx = np.mean([p[0] for p in parts])
        my = np.mean([p[1] for p in parts])

        def ellipses(x: Array, y: Array, cx: float, cy: float, s: float) -> Array:
            inside = np.zeros(x.shape, dtype=bool)
            for px_, py_, a_, b_, angle_ in parts:
                inside |= _ellipse(x, y, cx + s * (px_ - mx), cy + s * (py_ - my), s * a_, s * b_, angle_)
            return inside

        return ellipses
    raise ValueError(f"unknown flat shape {shape!r}; valid shapes: {', '.join(FLAT_SHAPES)}")


def _flat_mask(rng: np.random.Generator, size: int, shape: str, touch: bool) -> Array:
    """A mask of ``shape`` with its area in the flat range and touching the border iff ``touch``.

    Rejection sampling: shape, target area and centre are drawn; the scale is corrected
    (a few multiplicative steps, as the border may cut the shape) until the area lies in
    the range; the draw is kept when the border condition holds too. After 200 failed
    draws the border condition is dropped (never happens in practice).
    """
    lo, hi = AREA_RANGES["flat"]
    x, y = _grid(size)
    for attempt in range(400):
        draw = _shape_drawer(rng, shape)
        target = rng.uniform(lo + 0.01, hi - 0.01)
        if touch:  # centre near an edge
            near, along = rng.uniform(0.0, 0.22), rng.uniform(0.15, 0.85)
            side = int(rng.integers(4))
            cx, cy = [(near, along), (1 - near, along), (along, near), (along, 1 - near)][side]
        else:
            cx, cy = rng.uniform(0.3, 0.7, 2)
        scale = np.sqrt(target / np.pi)
        for _ in range(6):
            mask = draw(x, y, cx, cy, scale)
            area = float(mask.mean())
            if lo <= area <= hi:
                break
            scale *= np.sqrt(target / area) if area > 0 else 2.0
        else:
            continue
        if _touches_border(mask) == touch or attempt >= 200:
            return mask
    raise RuntimeError("could not draw a flat object in the area range")  # pragma: no cover


def _distance(a: Array, b: Array) -> float:
    return float(np.linalg.norm(a - b))


def _segment_distance(point: Array, c0: Array, c1: Array) -> float:
    """Euclidean distance of ``point`` from the segment c0-c1 (every colour of the gradient)."""
    d = c1 - c0
    t = float(np.clip(np.dot(point - c0, d) / max(float(np.dot(d, d)), 1e-12), 0.0, 1.0))
    return _distance(point, c0 + t * d)


def render_flat(
    rng: np.random.Generator,
    size: int = 32,
    shape: Optional[str] = None,
    touch: Optional[bool] = None,
    noise: float = FLAT_NOISE,
) -> Tuple[Array, Array]:
    """One image of the ``flat`` set.

    Args:
        rng: the image's random generator.
        size: side of the square image in pixels.
        shape: ``ellipse``, ``polygon`` or ``ellipses`` (default: drawn from ``rng``).
        touch: whether the object touches the border (default: drawn, probability 1/4).
        noise: std of the Gaussian pixel noise on [0, 1].

    Returns:
        ``(image, mask)``: uint8 (size, size, 3) and bool (size, size), True on the object.
    """
    if shape is None:
        shape = FLAT_SHAPES[int(rng.integers(len(FLAT_SHAPES)))]
    if touch is None:
        touch = bool(rng.random() < FLAT_BORDER_SHARE)
    mask = _flat_mask(rng, size, shape, touch)
    c0 = rng.uniform(0.1, 0.9, 3)
    c1 = np.clip(c0 + rng.uniform(-0.2, 0.2, 3), 0.0, 1.0)  # a faint gradient
    while True:
        colour = rng.uniform(0.0, 1.0, 3)
        if _segment_distance(colour, c0, c1) >= FLAT_MIN_COLOUR_DISTANCE:
            break
    image = _gradient(rng, size, c0, c1)
    image[mask] = colour
    image += noise * rng.standard_normal(image.shape)
    return _to_uint8(image), mask


# ----------------------------------------------------------------------------- textured


def _blob_mask(rng: np.random.Generator, size: int) -> Array:
    """A smooth connected blob without holes, its area in the textured range.

    A radial bump around a random centre (random ellipticity) plus a low-frequency random
    field, thresholded at the quantile of a random target area; then the connected piece
    holding the bump's peak is kept and its holes are filled.
    """
    lo, hi = AREA_RANGES["textured"]
    x, y = _grid(size)
    for _ in range(200):
        cx, cy = rng.uniform(0.3, 0.7, 2)
        ratio, angle = np.exp(rng.uniform(0.0, np.log(2.0))), rng.uniform(0, np.pi)
        dx, dy = x - cx, y - cy
        u = (np.cos(angle) * dx + np.sin(angle) * dy) / np.sqrt(ratio)
        v = (-np.sin(angle) * dx + np.cos(angle) * dy) * np.sqrt(ratio)
        wobble = rng.uniform(0.06, 0.14) * _smooth_field(rng, size, rng.uniform(2.5, 4.5))
        field = wobble - np.sqrt(u**2 + v**2)
        target = rng.uniform(lo + 0.02, hi - 0.02)
        mask = field >= np.quantile(field, 1.0 - target)
        peak = np.zeros_like(mask)
        peak[np.unravel_index(np.argmax(np.where(mask, field, -np.inf)), mask.shape)] = True
        mask = _flood(peak, mask)
        border = np.zeros_like(mask)
        border[0] = border[-1] = border[:, 0] = border[:, -1] = True
        mask = ~_flood(border, ~mask)  # fill holes: background not reachable from the border
        if lo <= mask.mean() <= hi:
            return mask
    raise RuntimeError("could not draw a textured blob in the area range")  # pragma: no cover


def _palette(rng: np.random.Generator) -> Tuple[Array, Array, Array, Array]:
    """Background colours b0, b1 and object colours o0, o1, all around one scene colour."""
    while True:
        scene = rng.uniform(0.25, 0.75, 3)
        b0, b1, o0, o1 = np.clip(scene + rng.uniform(-0.3, 0.3, (4, 3)), 0.0, 1.0)
        if _distance(o0, o1) >= 0.35 and _distance(b0, b1) >= 0.15:
            return b0, b1, o0, o1


def _texture(rng: np.random.Generator, size: int, texture: str, mask: Array) -> Array:
    """Texture values in [0, 1] over the whole image: (size, size); 0 is o0, 1 is o1.

    The smooth noise is standardised over the object's pixels (``mask``), so that even a
    small object spans both colours.
    """
    scale = size / 32.0
    x, y = _grid(size)
    px, py = x * size, y * size  # in pixels
    if texture == "stripes":
        period, angle = rng.uniform(3, 8) * scale, rng.uniform(0, np.pi)
        phase = rng.uniform(0, 1)
        t = (np.cos(angle) * px + np.sin(angle) * py) / period + phase
        return (np.floor(t) % 2).astype(np.float64)
    if texture == "checkerboard":
        cell = rng.uniform(2, 6) * scale
        angle = rng.uniform(0, np.pi / 2) if rng.random() < 0.5 else 0.0
        u = (np.cos(angle) * px + np.sin(angle) * py) / cell + rng.uniform(0, 1)
        v = (-np.sin(angle) * px + np.cos(angle) * py) / cell + rng.uniform(0, 1)
        return ((np.floor(u) + np.floor(v)) % 2).astype(np.float64)
    if texture == "noise":
        field = _smooth_field(rng, size, rng.uniform(5, 9))
        inside = field[mask]
        field = (field - inside.mean()) / max(float(inside.std()), 1e-12)
        return 0.5 + 0.5 * np.tanh(1.5 * field)
    raise ValueError(f"unknown texture {texture!r}; valid textures: {', '.join(TEXTURES)}")


def render_textured(
    rng: np.random.Generator,
    size: int = 32,
    texture: Optional[str] = None,
    noise: float = TEXTURED_NOISE,
) -> Tuple[Array, Array]:
    """One image of the ``textured`` set.

    Args:
        rng: the image's random generator.
        size: side of the square image in pixels.
        texture: ``stripes``, ``checkerboard`` or ``noise`` (default: drawn from ``rng``).
        noise: std of the Gaussian pixel noise on [0, 1] (whole image).

    Returns:
        ``(image, mask)``: uint8 (size, size, 3) and bool (size, size), True on the object.
    """
    if texture is None:
        texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    mask = _blob_mask(rng, size)
    b0, b1, o0, o1 = _palette(rng)
    t = _texture(rng, size, texture, mask)
    background = _gradient(rng, size, b0, b1)
    background += 0.04 * _smooth_field(rng, size, rng.uniform(2, 4))[..., None]  # weak texture
    obj = o0[None, None, :] + t[..., None] * (o1 - o0)[None, None, :]
    image = np.where(mask[..., None], obj, background)
    image += noise * rng.standard_normal(image.shape)
    return _to_uint8(image), mask


# ----------------------------------------------------------------------------- writing


def _render(kind: str, rng: np.random.Generator, size: int, index: int) -> Tuple[Array, Array, str]:
    """One image of ``kind``; the shape / texture cycles with ``index`` (equal shares)."""
    if kind == "flat":
        shape = FLAT_SHAPES[index % len(FLAT_SHAPES)]
        image, mask = render_flat(rng, size, shape=shape)
        return image, mask, shape
    if kind == "textured":
        texture = TEXTURES[index % len(TEXTURES)]
        image, mask = render_textured(rng, size, texture=texture)
        return image, mask, texture
    raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def write_folder_set(
    out: "str | os.PathLike[str]",
    kind: str,
    counts: Dict[str, int],
    size: int = 32,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> Dict[str, object]:
    """Write a ``folder`` data set of ``kind`` to ``out`` (via ``out.tmp-<pid>`` and a rename).

    Args:
        out: the data set's folder; must not exist unless ``force``.
        kind: ``flat`` or ``textured``.
        counts: images per split, e.g. ``{"train": 3000, "val": 300, "test": 500}``.
        size: side of the square images.
        seed: the set's seed (same seed, same bytes).
        force: replace an existing ``out``.
        progress: show a tqdm bar over the images (on stderr).

    Returns:
        A summary: ``kind``, ``size``, ``seed``, ``out``, ``counts``, ``area`` (mean object
        area fraction per split), ``border`` (fraction of objects touching the border) and
        ``variants`` (images per shape or texture).

    Raises:
        FileExistsError: ``out`` exists and ``force`` is false.
        ValueError: unknown kind or split, negative count, size below 8.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    unknown = [s for s in counts if s not in SPLITS]
    if unknown or any(int(n) < 0 for n in counts.values()):
        raise ValueError(f"counts must map splits {', '.join(SPLITS)} to counts >= 0, got {counts!r}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    out = Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; remove it or pass --force to replace it")
    tmp = out.parent / f"{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    areas: Dict[str, List[float]] = {s: [] for s in SPLITS}
    border: List[bool] = []
    variants: Dict[str, int] = {}
    total = sum(int(counts.get(s, 0)) for s in SPLITS)
    try:
        for sub in ("images", "masks", "splits"):
            (tmp / sub).mkdir(parents=True)
        rows = []
        with tqdm(total=total, desc=f"folder-{kind}", unit="image", disable=not progress) as bar:
            for split in SPLITS:
                stems = []
                for index in range(int(counts.get(split, 0))):
                    stem = f"{split}_{index:05d}"
                    image, mask, variant = _render(kind, image_rng(seed, kind, split, index), size, index)
                    Image.fromarray(image, "RGB").save(tmp / "images" / f"{stem}.png")
                    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(tmp / "masks" / f"{stem}.png")
                    area, touches = float(mask.mean()), _touches_border(mask)
                    areas[split].append(area)
                    border.append(touches)
                    variants[variant] = variants.get(variant, 0) + 1
                    rows.append((stem, split, variant, f"{area:.4f}", int(touches)))
                    stems.append(stem)
                    bar.update(1)
                (tmp / "splits" / f"{split}.txt").write_text("".join(s + "\n" for s in stems))
        with open(tmp / "objects.csv", "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(("stem", "split", "variant", "area", "touches_border"))
            writer.writerows(rows)
        if out.exists():  # force (checked above): swap the old set out only once the new one is complete
            if not force:
                raise FileExistsError(f"{out} already exists; remove it or pass --force to replace it")
            old = out.parent / f"{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "kind": kind,
        "size": size,
        "seed": seed,
        "out": str(out),
        "counts": {s: int(counts.get(s, 0)) for s in SPLITS},
        "area": {s: (float(np.mean(a)) if a else float("nan")) for s, a in areas.items()},
        "border": float(np.mean(border)) if border else float("nan"),
        "variants": dict(sorted(variants.items())),
    }


def summary_line(summary: Dict[str, object]) -> str:
    """The one line the script prints about a written set."""
    counts, area = summary["counts"], summary["area"]
    return (
        f"folder-{summary['kind']} ({summary['size']} px, seed {summary['seed']}) -> {summary['out']}: "
        + ", ".join(f"{s} {counts[s]}" for s in SPLITS)
        + " images; mean object area "
        + ", ".join(f"{s} {area[s]:.3f}" for s in SPLITS if counts[s])  # an empty split has no mean
        + f"; touching the border {summary['border']:.3f}; "
        + ", ".join(f"{k} {n}" for k, n in summary["variants"].items())
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; returns the exit status (2 for an existing --out or bad options)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind_arg", nargs="?", choices=KINDS, metavar="KIND",
                        help="flat or textured (same as --kind)")
    parser.add_argument("--kind", choices=KINDS, help="flat or textured")
    parser.add_argument("--out", required=True, metavar="DIR", help="the data set's folder (must not exist)")
    parser.add_argument("--size", type=int, default=32, metavar="S", help="image side in pixels (default 32)")
    parser.add_argument("--train", type=int, default=3000, metavar="N", help="training images (default 3000)")
    parser.add_argument("--val", type=int, default=300, metavar="N", help="validation images (default 300)")
    parser.add_argument("--test", type=int, default=500, metavar="N", help="test images (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the set (default 0)")
    parser.add_argument("--force", action="store_true", help="replace an existing DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.kind and args.kind_arg and args.kind != args.kind_arg:
        parser.error(f"two different kinds given: {args.kind_arg} and --kind {args.kind}")
    kind = args.kind or args.kind_arg
    if kind is None:
        parser.error("give the kind: flat or textured (as --kind or as the first argument)")
    counts = {"train": args.train, "val": args.val, "test": args.test}
    try:
        summary = write_folder_set(args.out, kind, counts, size=args.size, seed=args.seed,
                                   force=args.force, progress=not args.quiet)
    except (FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
