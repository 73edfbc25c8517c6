"""Synthetic shapes: the built-in data set that needs no download and trains on a CPU.

Every image is one object (or two, for K = 3) pasted on a background, drawn from
independent random parameters (ReDO's assumption: the object's colour and
texture carry no information about the background's). It is generated on the fly from
``(seed, split, index)`` by vectorised numpy, so it is deterministic, cheap (thousands of
64 x 64 images per second on one core) and comes with an exact ground-truth mask.

What an image is made of (all coordinates are fractions of the image side, so 32, 64
and 128 pixel versions show the same scene at different resolutions):

* **Shape** (a *gauge* field ``L``, small inside and growing outwards): an ellipse, a
  convex polygon (3 to 6 sides), a union of three discs ("blobs") or a smooth star-like
  blob, rotated and stretched at random. The object is the set ``L <= t`` where ``t`` is
  the quantile of ``L`` that gives a target area, so its fraction of the image is exact:
  uniform in ``[0.18, 0.45]`` for K = 2 (:data:`OBJECT_FRACTION`).
* **Colours**: the background blends three colours, the object two, all drawn from the
  *same* HSV distribution, so across the data set the object's and the background's
  colour distributions overlap fully. A per-image two-colour clustering sees five colour
  modes and often splits the background's gradient instead of separating the object:
  on the test split at 32 x 32 it reaches a mean IoU of about 0.6 (best polarity per
  image), against 0.44 for a centred disc of the right area and 0.32 for "all
  foreground".
* **Textures**, low frequency so that a small generator can redraw them: the
  background is a strong linear gradient bent by two slow plane waves (0.5 to 2 cycles
  per image), its third colour brought in by a third slow wave; the object has one
  dominant pattern (stripes of 1.5 to 4 cycles per image, rings following its shape, or
  two crossing waves of 1 to 3 cycles) with the other two weaker.
* **K = 3**: object 0 is a rounded shape (ellipse, blobs or star), object 1 a polygon,
  each covering 10 % to 22 % of the image, in opposite halves, stacked in random order;
  the upper one never hides the inner half of the lower one, so both stay visible. Mask
  channels: object 0, object 1, background (the order of the official Colored-2-MNIST).

Splits draw from separate random streams (``train``, ``val``, ``test``) of the same
seed, so they never share an image. Default lengths: 4000 / 256 / 512.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from .base import PathLike, ProceduralDataset, check_split
from .glyphs import rasterise_digits
from .hashing import stream_key, uniforms

__all__ = ["SyntheticShapes", "DEFAULT_LENGTHS", "OBJECT_FRACTION", "OBJECT_FRACTION_K3", "SHAPES", "LEVELS",
           "Level", "OBJECT_KINDS", "dataset_name", "parse_dataset_name"]

DEFAULT_LENGTHS: Mapping[str, int] = MappingProxyType({"train": 4000, "val": 256, "test": 512})
#: (min, max) fraction of the image covered by the object, K = 2
OBJECT_FRACTION: Tuple[float, float] = (0.18, 0.45)
#: (min, max) fraction of the image covered by each of the two objects before stacking, K = 3
OBJECT_FRACTION_K3: Tuple[float, float] = (0.10, 0.22)
SHAPES: Tuple[str, ...] = ("ellipse", "polygon", "blobs", "star")
#: what the objects are: the shape families above, or digits (``digits-*`` data sets)
OBJECT_KINDS: Tuple[str, ...] = ("shapes", "digits")
#: (min, max) height of a digit as a fraction of the image side, K = 2 and K = 3
DIGIT_HEIGHT: Tuple[float, float] = (0.55, 0.85)
DIGIT_HEIGHT_K3: Tuple[float, float] = (0.40, 0.55)
_N_BACKGROUND = 24
_N_OBJECT = 64
_N_CANDIDATES = 4  # candidate colours per object when a level asks for distinct colours


class Level(NamedTuple):
    """How much texture one rung of the ladder of difficulty has (scales of the textured level).

    Attributes:
        background_contrast: scale of the background's colour differences (0: one flat colour).
        background_waves: scale of the slow waves that bend the background's gradient and
            bring in its third colour (0: a plain linear gradient).
        object_contrast: scale of the object's colour difference (0: one flat colour).
        object_pattern: scale of the object's stripes, rings and crossing waves.
        object_ramp: strength of a linear gradient across the object (used without pattern).
        distinct: minimum RGB distance (in [-1, 1] units) between the base colours of the
            background and of every object (0: no constraint, colours fully independent).
    """

    background_contrast: float
    background_waves: float
    object_contrast: float
    object_pattern: float
    object_ramp: float
    distinct: float


#: The ladder of difficulty, easiest first; every level draws the same shapes at the same
#: places for the same ``(seed, split, index)``, only the colours and textures change.
LEVELS: Mapping[str, Level] = MappingProxyType({
    "flat": Level(0.0, 0.0, 0.0, 0.0, 0.0, 0.6),
    "gradient": Level(0.6, 0.0, 0.6, 0.0, 1.0, 0.6),
    "soft": Level(0.8, 0.5, 0.6, 0.5, 0.0, 0.4),
    "textured": Level(1.0, 1.0, 1.0, 1.0, 0.0, 0.0),
})
_TWO_PI = 2.0 * math.pi


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _hsv_colours(u: np.ndarray) -> np.ndarray:
    """(..., 3) uniforms -> (..., 3) RGB in [-1, 1]: any hue, saturation 0.2-0.9, value 0.25-0.95."""
    h6 = 6.0 * u[..., 0:1]
    s = 0.2 + 0.7 * u[..., 1:2]
    v = 0.25 + 0.7 * u[..., 2:3]
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h6, 6.0)
    rgb = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (2.0 * rgb - 1.0).astype(np.float32)


class _Grid:
    """Pixel-centre coordinates in [0, 1]: ``x`` of shape (1, 1, S), ``y`` of shape (1, S, 1)."""

    def __init__(self, size: int) -> None:
        centres = ((np.arange(size, dtype=np.float32) + 0.5) / size).astype(np.float32)
        self.size = size
        self.x = centres.reshape(1, 1, size)
        self.y = centres.reshape(1, size, 1)

    def plane_waves(self, amplitude: np.ndarray, cycles: np.ndarray, direction: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """``amplitude * sin(2 pi cycles (x cos d + y sin d) + phase)``: (B, J) parameters -> (B, J, S, S).

        Computed separably, ``sin(a + b) = sin(a) cos(b) + cos(a) sin(b)`` with ``a`` a
        function of x only and ``b`` of y only: 4 S sines per wave instead of S^2.
        """
        col = lambda a: _f32(a)[:, :, None, None]  # noqa: E731
        x, y = self.x[None], self.y[None]
        a = col(_TWO_PI * cycles * np.cos(direction)) * x + col(phase)
        b = col(_TWO_PI * cycles * np.sin(direction)) * y
        amp = col(amplitude)
        out = (amp * np.sin(a)) * np.cos(b)
        out += (amp * np.cos(a)) * np.sin(b)
        return out

    def ramp(self, gx: np.ndarray, gy: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """``gx * x + gy * y + offset`` for a batch: (B, S, S) float32."""
        gx, gy, offset = (_f32(a)[:, None, None] for a in (gx, gy, offset))
        return (gx * self.x + offset) + gy * self.y


class _Layer(NamedTuple):
    """A layer as colours and blending fields: ``colour = base + sum_j deltas[:, j] * weights[j]``.

    ``base`` (B, 3) and ``deltas`` (B, 3, J) are RGB in [-1, 1] units; ``weights``
    (B, J, S, S) are fields in [0, 1]. Keeping layers in this form lets the composite be
    one batched matrix product instead of several passes over 3-channel images.
    """

    base: np.ndarray
    deltas: np.ndarray
    weights: np.ndarray

    def render(self) -> np.ndarray:
        b, j, h, w = self.weights.shape
        out = np.matmul(self.deltas, self.weights.reshape(b, j, h * w)).reshape(b, 3, h, w)
        out += self.base[:, :, None, None]
        return out


def _background(grid: _Grid, u: np.ndarray, level: Level = LEVELS["textured"]) -> _Layer:
    """Background: three colours blended by smooth fields, independent of the object.

    A strong linear gradient from colour 1 to colour 2 (it spans most of the image),
    bent by two slow plane waves (0.5 to 2 cycles per image); a third colour comes in
    where a third slow wave (0.5 to 1.5 cycles) is positive. ``level`` scales the colour
    differences and the waves (the textured level: 1 and 1).
    """
    c1, c2, c3 = _hsv_colours(u[:, 0:9].reshape(-1, 3, 3)).transpose(1, 0, 2)
    waviness = np.float64(level.background_waves)
    angle = _TWO_PI * u[:, 9]
    strength = 1.2 + 0.8 * u[:, 10]
    gx, gy = strength * np.cos(angle), strength * np.sin(angle)
    waves = grid.plane_waves(
        waviness * np.stack([0.3 * u[:, 11], 0.3 * u[:, 12], 0.4 + 0.6 * u[:, 13]], 1),  # amplitudes
        np.stack([0.5 + 1.5 * u[:, 14], 0.5 + 1.5 * u[:, 15], 0.5 + 1.0 * u[:, 16]], 1),  # cycles per image
        _TWO_PI * u[:, 17:20],  # directions
        _TWO_PI * u[:, 20:23],  # phases
    )
    t = grid.ramp(gx, gy, 0.5 - 0.5 * (gx + gy))
    t += waves[:, 0]
    t += waves[:, 1]
    mix = waves[:, 2]
    np.clip(t, 0.0, 1.0, out=t)
    np.clip(mix, 0.0, 1.0, out=mix)
    # (1 - m) (c1 + (c2 - c1) t) + m c3  =  c1 + (c2 - c1) t (1 - m) + (c3 - c1) m
    t -= t * mix
    weights = np.stack([t, mix], 1)
    deltas = np.stack([c2 - c1, c3 - c1], 2)
    if level.background_contrast != 1.0:
        deltas *= np.float32(level.background_contrast)
    return _Layer(c1, deltas, weights)


def _gauge(grid: _Grid, u: np.ndarray, families: np.ndarray, centre: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """The shape field L (B, S, S): 0 at the object's centre, growing outwards.

    ``fraction`` (the target area) sets the spread of the blobs' discs.
    """
    b = len(u)
    rotation = _TWO_PI * u[:, 4]
    cos_r, sin_r = _f32(np.cos(rotation))[:, None, None], _f32(np.sin(rotation))[:, None, None]
    dx = grid.x - _f32(centre[:, 0])[:, None, None]
    dy = grid.y - _f32(centre[:, 1])[:, None, None]
    qx = dx * cos_r + dy * sin_r
    qy = dy * cos_r - dx * sin_r
    aspect = _f32(0.45 + 0.55 * u[:, 5])[:, None, None]
    qy /= aspect
    out = np.empty((b, grid.size, grid.size), dtype=np.float32)
    for code, family in enumerate(SHAPES):
        rows = np.flatnonzero(families == code)
        if rows.size == 0:
            continue
        x, y, p = qx[rows], qy[rows], u[rows]
        if family == "ellipse":
            out[rows] = np.sqrt(x * x + y * y)
        elif family == "polygon":
            sides = 3 + np.minimum((p[:, 6] * 4).astype(np.int64), 3)  # 3..6
            field = np.full(x.shape, -np.inf, dtype=np.float32)
            for k in range(6):
                used = k < sides
                angle = _TWO_PI * (k + 0.35 * (p[:, 7 + k] - 0.5)) / sides
                inv_offset = np.where(used, 1.0 / (0.8 + 0.4 * p[:, 13 + k]), 0.0)
                nx = _f32(np.cos(angle) * inv_offset)[:, None, None]
                ny = _f32(np.sin(angle) * inv_offset)[:, None, None]
                np.maximum(field, x * nx + y * ny, out=field)
            out[rows] = field
        elif family == "blobs":
            # three discs whose centres lie within 0.4 nominal radii of the object's
            # centre, so that they overlap into one blob at the final threshold
            nominal = np.sqrt(fraction[rows] / math.pi)
            field = np.full(x.shape, np.inf, dtype=np.float32)
            for k in range(3):
                ox = _f32(0.4 * nominal * (2 * p[:, 6 + 2 * k] - 1))[:, None, None]
                oy = _f32(0.4 * nominal * (2 * p[:, 7 + 2 * k] - 1))[:, None, None]
                inv_r2 = _f32(1.0 / (0.6 + 0.4 * p[:, 12 + k]) ** 2)[:, None, None]
                ex, ey = x - ox, y - oy
                np.minimum(field, (ex * ex + ey * ey) * inv_r2, out=field)
            out[rows] = np.sqrt(field)
        else:  # star: r / R(theta), R = 1 + sum_k a_k cos(k theta + phi_k)
            r = np.sqrt(x * x + y * y) + np.float32(1e-6)
            c, s = x / r, y / r
            radius = np.ones_like(r)
            ck, sk = c, s
            for k in range(2, 5):
                ck, sk = ck * c - sk * s, sk * c + ck * s
                amp = 0.18 * p[:, 6 + k]
                phase = _TWO_PI * p[:, 10 + k]
                a_cos = _f32(amp * np.cos(phase))[:, None, None]
                a_sin = _f32(amp * np.sin(phase))[:, None, None]
                radius += ck * a_cos - sk * a_sin
            out[rows] = r / radius
    return out


def _quantile_rows(field: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Per image, the k-th smallest value of ``field`` with ``k = round(fraction * S^2)``."""
    flat = field.reshape(len(field), -1)
    ks = np.clip(np.rint(fractions * flat.shape[1]).astype(np.int64), 1, flat.shape[1])
    return np.array([np.partition(row, k - 1)[k - 1] for row, k in zip(flat, ks)], dtype=np.float32)


def _object_texture(grid: _Grid, u: np.ndarray, level: np.ndarray, style: Level = LEVELS["textured"],
                    colour: Optional[np.ndarray] = None) -> _Layer:
    """Object: two colours blended by a patterned field.

    One dominant pattern (weight 1), the two others weaker (weight 0 to 0.3): stripes of
    1.5 to 4 cycles per image; rings following the shape (``level`` is L / t, 0 at the
    centre and 1 on the boundary; 0.5 to 1.5 periods across); two crossing plane waves of
    1 to 3 cycles per image. ``style`` scales the pattern and the colour difference and
    may add a linear ramp; ``colour`` replaces the first colour (distinct colours).
    """
    b = len(u)
    c1, c2 = _hsv_colours(u[:, 24:30].reshape(-1, 2, 3)).transpose(1, 0, 2)
    if colour is not None:
        c1 = colour
    dominant = np.minimum((u[:, 30] * 3).astype(np.int64), 2)
    weights = 0.3 * u[:, 31:34]
    weights[np.arange(b), dominant] = 1.0
    if style.object_pattern != 1.0:
        weights *= style.object_pattern
    waves = grid.plane_waves(
        np.stack([0.5 * weights[:, 0], 0.3 * weights[:, 2], 0.3 * weights[:, 2]], 1),
        np.stack([1.5 + 2.5 * u[:, 34], 1.0 + 2.0 * u[:, 35], 1.0 + 2.0 * u[:, 36]], 1),
        _TWO_PI * u[:, 37:40],
        _TWO_PI * u[:, 40:43],
    )
    t = waves.sum(1)
    rings = level * _f32(_TWO_PI * (0.5 + 1.0 * u[:, 43]))[:, None, None]
    rings += _f32(_TWO_PI * u[:, 44])[:, None, None]
    np.cos(rings, out=rings)
    rings *= _f32(0.5 * weights[:, 1])[:, None, None]
    t += rings
    t += np.float32(0.5)
    if style.object_ramp:
        angle = _TWO_PI * u[:, 45]
        gx, gy = style.object_ramp * np.cos(angle), style.object_ramp * np.sin(angle)
        t += grid.ramp(gx, gy, -0.5 * (gx + gy))
    np.clip(t, 0.0, 1.0, out=t)
    delta = c2 - c1
    if style.object_contrast != 1.0:
        delta *= np.float32(style.object_contrast)
    return _Layer(c1, delta[:, :, None], t[:, None])


def _distinct_colours(u: np.ndarray, others: Sequence[np.ndarray], distance: float) -> np.ndarray:
    """An object's first colour, at least ``distance`` (RGB, [-1, 1] units) from ``others``.

    The candidates are the object's own colour (``u[:, 24:27]``) followed by
    :data:`_N_CANDIDATES` - 1 spares (``u[:, 48:57]``); the first far enough from every
    colour in ``others`` is taken, or the farthest when none is. The constraint makes
    the segmentation well posed (an object of the background's colour is invisible); it
    is the only dependence between an object's and the background's colours.
    """
    cands = _hsv_colours(np.concatenate([u[:, 24:27], u[:, 48:48 + 3 * (_N_CANDIDATES - 1)]], 1)
                         .reshape(-1, _N_CANDIDATES, 3))
    gap = np.min(np.stack([np.linalg.norm(cands - o[:, None], axis=2) for o in others], 0), 0)
    ok = gap >= distance
    choice = np.where(ok.any(1), ok.argmax(1), gap.argmax(1))
    return cands[np.arange(len(u)), choice]


def _composite(background: _Layer, objects: Sequence[_Layer], regions: np.ndarray) -> np.ndarray:
    """The image (B, 3, S, S): each object's colours in its region, the background elsewhere.

    All layers' fields, each multiplied by its region's indicator, go through one batched
    matrix product with all layers' colours.
    """
    outside = ~regions.any(1)
    selectors = [outside] + [regions[:, k] for k in range(regions.shape[1])]
    layers = [background] + list(objects)
    b, _, h, w = background.weights.shape
    columns, fields = [], []
    for layer, selector in zip(layers, selectors):
        sel = selector.astype(np.float32)
        columns += [layer.base[:, :, None], layer.deltas]
        fields += [sel[:, None], layer.weights * sel[:, None]]
    colours = np.concatenate(columns, 2)
    weights = np.concatenate(fields, 1).reshape(b, -1, h * w)
    return np.matmul(colours, weights).reshape(b, 3, h, w)


class SyntheticShapes(ProceduralDataset):
    """Procedural shapes on textured backgrounds, deterministic by ``(seed, split, index)``.

    Args:
        root: ignored (nothing is read from disk); accepted so that every data set has
            the same :func:`~redo_lib.data.load_dataset` signature.
        split: ``"train"``, ``"val"`` or ``"test"`` (independent random streams).
        image_size: side S of the square images (32, 64 and 128 are tested).
        n_regions: K = 2 (one object) or K = 3 (two objects).
        seed: the data set's seed.
        length: number of items; default 4000 / 256 / 512 for train / val / test.

    Items: ``"image"`` (3, S, S) in [-1, 1], ``"mask"`` (1, S, S) of 0 / 1 for K = 2, or
    (3, S, S) one-hot (object 0, object 1, background) for K = 3, and ``"index"``.
    Use :meth:`batch` for many items at once.
    """

    name = "synthetic"

    def __init__(
        self,
        root: Optional[PathLike] = None,
        split: str = "train",
        image_size: int = 32,
        n_regions: int = 2,
        seed: int = 0,
        length: Optional[int] = None,
        level: str = "textured",
        objects: str = "shapes",
    ) -> None:
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"unknown synthetic level {level!r}; choose one of {', '.join(LEVELS)}")
        if objects not in OBJECT_KINDS:
            raise ValueError(f"unknown synthetic objects {objects!r}; choose one of {', '.join(OBJECT_KINDS)}")
        self.level = level
        self.objects = objects
        self.name = dataset_name(level, objects)
        self._style = LEVELS[level]
        self.split = check_split(self.name, split, self.splits)
        if n_regions not in (2, 3):
            raise ValueError(f"synthetic data supports n_regions 2 or 3, got {n_regions}")
        if image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {image_size}")
        self.image_size = int(image_size)
        self.n_regions = int(n_regions)
        self.seed = int(seed)
        self.length = DEFAULT_LENGTHS[split] if length is None else int(length)
        if self.length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.has_masks = True
        self._grid = _Grid(self.image_size)
        self._keys = {
            layer: stream_key(self.seed, "redo-syn", self.split, layer)
            for layer in ("backgrnd", "object0", "object1", "layout")
        }

    # ------------------------------------------------------------------ drawing
    def _draw(self, idx: np.ndarray) -> Tuple[np.ndarray, _Layer, Sequence[_Layer]]:
        """``(regions (B, K-1, S, S) bool, background layer, object layers)`` for ``idx``."""
        background = _background(self._grid, uniforms(self._keys["backgrnd"], idx, _N_BACKGROUND), self._style)
        if self.n_regions == 2:
            regions, objects = self._draw_one_object(idx, background)
        else:
            regions, objects = self._draw_two_objects(idx, background)
        return regions, background, objects

    def _textures(self, params: Sequence[np.ndarray], fields: Sequence[np.ndarray], background: _Layer) -> Sequence[_Layer]:
        """The object layers, in distinct colours where the level asks for them."""
        style, layers, taken = self._style, [], [background.base]
        for u, field in zip(params, fields):
            colour = _distinct_colours(u, taken, style.distinct) if style.distinct > 0 else None
            layer = _object_texture(self._grid, u, field, style, colour)
            taken.append(layer.base)
            layers.append(layer)
        return layers

    def _digits(self, u: np.ndarray, digits: np.ndarray, centre: np.ndarray, heights: Tuple[float, float]) -> Tuple[np.ndarray, np.ndarray]:
        """``(inside, level)`` of digits placed by the uniforms ``u`` (see :mod:`.glyphs`)."""
        height = heights[0] + (heights[1] - heights[0]) * u[:, 61]
        return rasterise_digits(self.image_size, digits, centre, height,
                                rotation=0.7 * (u[:, 4] - 0.5), shear=0.5 * (u[:, 62] - 0.5),
                                stretch=0.85 + 0.4 * u[:, 63])

    def _draw_one_object(self, idx: np.ndarray, background: _Layer) -> Tuple[np.ndarray, Sequence[_Layer]]:
        grid = self._grid
        u = uniforms(self._keys["object0"], idx, _N_OBJECT)
        if self.objects == "digits":
            digits = np.minimum((u[:, 60] * 10).astype(np.int64), 9)
            height = DIGIT_HEIGHT[0] + (DIGIT_HEIGHT[1] - DIGIT_HEIGHT[0]) * u[:, 61]
            margin = np.maximum(0.5 - 0.5 * height - 0.05, 0.0)[:, None]
            centre = 0.5 + margin * (2 * u[:, 1:3] - 1)
            inside, field = self._digits(u, digits, centre, DIGIT_HEIGHT)
            return inside[:, None], self._textures([u], [field], background)
        families = np.minimum((u[:, 0] * len(SHAPES)).astype(np.int64), len(SHAPES) - 1)
        centre = 0.25 + 0.5 * u[:, 1:3]
        fraction = OBJECT_FRACTION[0] + (OBJECT_FRACTION[1] - OBJECT_FRACTION[0]) * u[:, 3]
        field = _gauge(grid, u, families, centre, fraction)
        threshold = _quantile_rows(field, fraction)[:, None, None]
        inside = field <= threshold
        field /= threshold
        return inside[:, None], self._textures([u], [field], background)

    def _draw_two_objects(self, idx: np.ndarray, background: _Layer) -> Tuple[np.ndarray, Sequence[_Layer]]:
        grid = self._grid
        n = len(idx)
        layout = uniforms(self._keys["layout"], idx, 8)
        # centres in opposite halves along a random axis, in a random order
        along = np.where(layout[:, 1] < 0.5, 0.3, 0.7) + 0.1 * (layout[:, 2] - 0.5)
        other_along = 1.0 - along + 0.1 * (layout[:, 3] - 0.5)
        across = 0.5 + 0.3 * (layout[:, 4:6] - 0.5)
        vertical = layout[:, 0] < 0.5
        fields, thresholds, cores, params = [], [], [], []
        for k, position in enumerate((along, other_along)):
            centre = np.stack([position, across[:, k]], 1)
            centre[vertical] = centre[vertical][:, ::-1]
            u = uniforms(self._keys[f"object{k}"], idx, _N_OBJECT)
            if self.objects == "digits":  # Colored-2-MNIST: an even digit, then an odd one
                digits = 2 * np.minimum((u[:, 60] * 5).astype(np.int64), 4) + k
                inside, field = self._digits(u, digits, centre, DIGIT_HEIGHT_K3)
                # the same gauge convention as the shapes: inside <= 1, the core <= 0.5
                fields.append(np.where(inside, 0.5 * field / max(float(field.max()), 1e-6), 2.0).astype(np.float32))
                thresholds.append(np.ones((n, 1, 1), np.float32))
                cores.append(np.zeros((n, 1, 1), np.float32))
                params.append(u)
                continue
            if k == 0:  # rounded shapes: ellipse, blobs, star
                families = np.array([0, 2, 3])[np.minimum((u[:, 0] * 3).astype(np.int64), 2)]
            else:  # polygons
                families = np.full(n, 1)
            fraction = OBJECT_FRACTION_K3[0] + (OBJECT_FRACTION_K3[1] - OBJECT_FRACTION_K3[0]) * u[:, 3]
            field = _gauge(grid, u, families, centre, fraction)
            fields.append(field)
            thresholds.append(_quantile_rows(field, fraction)[:, None, None])
            cores.append(_quantile_rows(field, fraction / 2)[:, None, None])
            params.append(u)
        top = layout[:, 6] < 0.5  # True: object 0 is drawn over object 1
        inside = np.stack([fields[k] <= thresholds[k] for k in range(2)], 1)
        upper = np.where(top[:, None, None], inside[:, 0], inside[:, 1])
        lower_core = np.where(top[:, None, None], fields[1] <= cores[1], fields[0] <= cores[0])
        upper &= ~lower_core  # the upper object never hides the lower one's core
        lower = np.where(top[:, None, None], inside[:, 1], inside[:, 0]) & ~upper
        regions = np.stack([np.where(top[:, None, None], upper, lower), np.where(top[:, None, None], lower, upper)], 1)
        objects = self._textures(params, [fields[k] / thresholds[k] for k in range(2)], background)
        return regions, objects

    def render(self, indices: Sequence[int]) -> Dict[str, np.ndarray]:
        """Numpy arrays for ``indices``: the composite and its layers (for tests and plots).

        Returns ``image`` (B, 3, S, S) in [-1, 1], ``regions`` (B, K-1, S, S) bool (the
        visible part of each object), ``objects`` (B, K-1, 3, S, S) and ``background``
        (B, 3, S, S): each layer drawn over the whole image; the composite takes each
        object's layer inside its region and the background's elsewhere.
        """
        idx = self._check_indices(indices)
        regions, background, objects = self._draw(idx)
        return {
            "image": _composite(background, objects, regions),
            "regions": regions,
            "objects": np.stack([layer.render() for layer in objects], 1),
            "background": background.render(),
        }

    def batch(self, indices: Sequence[int]) -> Dict[str, torch.Tensor]:
        """Stacked items: ``image`` (B, 3, S, S), ``mask`` (B, 1 or 3, S, S), ``index`` (B,)."""
        idx = self._check_indices(indices)
        size = self.image_size
        channels = 1 if self.n_regions == 2 else 3
        image = np.empty((len(idx), 3, size, size), dtype=np.float32)
        mask = np.empty((len(idx), channels, size, size), dtype=np.float32)
        chunk = max(1, 32768 // (size * size))  # keep the working set in cache
        for start in range(0, len(idx), chunk):
            part = slice(start, start + chunk)
            regions, background, objects = self._draw(idx[part])
            image[part] = _composite(background, objects, regions)
            mask[part, : regions.shape[1]] = regions
            if self.n_regions == 3:
                mask[part, 2] = ~(regions[:, 0] | regions[:, 1])
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask), "index": torch.from_numpy(idx.copy())}

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(split={self.split!r}, length={self.length}, image_size={self.image_size}, "
            f"n_regions={self.n_regions}, seed={self.seed}, level={self.level!r}, objects={self.objects!r})"
        )


def dataset_name(level: str, objects: str = "shapes") -> str:
    """The registry name of a synthetic data set: ``synthetic-flat``, ``digits-soft``, ...

    The textured shapes keep their original name, ``synthetic``.
    """
    prefix = "synthetic" if objects == "shapes" else objects
    return prefix if (objects, level) == ("shapes", "textured") else f"{prefix}-{level}"


def parse_dataset_name(name: str) -> Tuple[str, str]:
    """``(level, objects)`` of a synthetic data set's name (inverse of :func:`dataset_name`)."""
    for objects in OBJECT_KINDS:
        for level in LEVELS:
            if dataset_name(level, objects) == name:
                return level, objects
    raise ValueError(f"{name!r} is not a synthetic data set")
